"""What runs things on this machine: process groups, waiting, free ports, throwaway TLS
certificates, a local PostgreSQL. Knows nothing of stacks or answers."""

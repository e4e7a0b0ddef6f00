"""halgen: compile validated answers into a deployment repo for an HA Perl stack on Linode."""

__version__ = "0.1.0"

# Two commands do all set-up on a fresh machine (Python >= 3.11 with venv):
#   make demo   render a stack from the built-in default answers into ./demo and show it
#   make test   run the whole test suite
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test check bench system-deps boot-vms

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/halgen render --out demo --force
	@echo
	@cd demo && find . -type f | sort
	@echo
	@sed -n '/^## Nodes/,/^## What is here/p' demo/README.md | head -n -1

# The code checks run first: style (ruff), types (mypy, strict for the compiler),
# and the layer contracts (import-linter, see pyproject.toml).
check: $(STAMP)
	$(VENV)/bin/ruff check generator tests bench tools hatch_build.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: check
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/render_bench.py $(BENCH_ARGS)
	$(PY) bench/lint_bench.py $(BENCH_ARGS)

# One node of every role booted from its user-data in a QEMU virtual machine (emulated:
# minutes per node; CI boots lb1 only). Root, with make system-deps.
boot-vms: $(STAMP)
	HALGEN_VM_NODES=lb1,app1,db1,redis1 $(PY) -m pytest -q -s tests/test_node_boot.py -k virtual_machine

# Real-server tests need these (Debian/Ubuntu, as root); without them they skip locally.
# PostgreSQL tests also need root: they run the server as the postgres user.
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		nginx haproxy starman starlet libplack-perl libdbd-pg-perl libredis-perl libio-socket-ssl-perl postgresql redis-server redis-sentinel \
		redis-tools pgbackrest restic cloud-init shellcheck openssl curl git ca-certificates util-linux \
		systemd wrk certbot pebble iproute2 openssh-server ssh-audit systemd-container debootstrap qemu-system-x86 e2fsprogs \
		patroni etcd-server etcd-client xz-utils \
		prometheus prometheus-alertmanager prometheus-node-exporter prometheus-postgres-exporter prometheus-redis-exporter \
		prometheus-nginx-exporter prometheus-blackbox-exporter mtail

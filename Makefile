# chops: the stable entry point for people and CI. Targets call `inv`; the logic lives in Python.
# `make help` lists the public targets: a target is public when its line has a `## help` comment.

PYTHON ?= python3
VENV   := .venv
INV    := $(VENV)/bin/inv
STAMP  := $(VENV)/.requirements.stamp

.DEFAULT_GOAL := help

.PHONY: help  ## list the public targets with one line of help
help:
	@echo "usage: make TARGET"
	@echo
	@grep -hE '^\.PHONY: [a-zA-Z_-]+ +## ' $(MAKEFILE_LIST) | \
		sed -E 's/^\.PHONY: ([a-zA-Z_-]+) +## (.*)/\1\t\2/' | \
		awk -F'\t' '{ printf "  %-10s %s\n", $$1, $$2 }'
	@echo
	@echo "Every task, with its options: $(INV) --list, $(INV) --help TASK"

.PHONY: setup  ## build .venv and install requirements.txt (again only when it changes)
setup: $(STAMP)

# pip shows its own progress bars on a terminal; in CI (CI=true) it prints one line per package, no bars.
PIP_PROGRESS := $(if $(filter true 1 yes,$(CI)),--progress-bar off,)

$(STAMP): requirements.txt
	@echo "setup: a virtualenv in $(VENV) ($(PYTHON)) with requirements.txt:"
	@grep -E '^[A-Za-z0-9]' requirements.txt | tr '\n' ' ' | fold -s -w 100 | sed 's/^/  /'; echo
	@echo "  and their dependencies: about 1 GB installed (chDB, the embedded engine, is half of it); a few minutes"
	@echo "  on a first run, seconds afterwards (pip's cache)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check $(PIP_PROGRESS) -r requirements.txt
	@touch $@
	@echo "setup: done; next: make demo, or $(INV) --list"

.PHONY: demo  ## from a fresh clone: venv, database, migrations, sample data, every pipeline, a summary and the report page
demo: setup
	$(INV) db.setup
	$(INV) db.migrate
	$(INV) pipeline.sample-data --days 7
	$(INV) backfill --days 7
	$(INV) pipeline.list
	$(INV) db.info
	$(INV) backfill.counts --days 7
	$(INV) report --days 7
	$(INV) proc.check

.PHONY: migrate  ## apply pending migrations (inv db.migrate)
migrate: setup
	$(INV) db.migrate

.PHONY: migrate-status  ## every migration and its state; exits 1 when anything is not applied
migrate-status: setup
	$(INV) db.status --check

DAYS ?= 7
JOBS ?=
.PHONY: backfill  ## backfill the last DAYS days (default 7) of JOBS (default: every backfillable pipeline)
backfill: setup
	$(INV) backfill --days $(DAYS) $(if $(JOBS),--jobs $(JOBS))

# make deploy HOST=x [USER=] [PORT=] [DEPLOY_PATH=] [TARGET=] [ACCEPT_NEW_HOST_KEY=1]: the values reach inv as
# single arguments through the environment (never pasted into the shell line); USER and PORT count only when given
# on make's command line.
.PHONY: deploy  ## deploy HOST=x (USER= PORT= DEPLOY_PATH= ACCEPT_NEW_HOST_KEY=1) or TARGET=name of config/deploy.toml
deploy: setup
	$(INV) deploy $${HOST:+--host "$$HOST"} $${TARGET:+--target "$$TARGET"} \
		$(if $(filter command line,$(origin USER)),--user "$$USER") \
		$(if $(filter command line,$(origin PORT)),--port "$$PORT") \
		$${DEPLOY_PATH:+--path "$$DEPLOY_PATH"} \
		$(if $(filter 1 yes true,$(ACCEPT_NEW_HOST_KEY)),--accept-new-host-key)

.PHONY: check  ## the health verdict (inv proc.check); exits 1 when a check fails
check: setup
	$(INV) proc.check

.PHONY: clean  ## remove what dead processes left: stale pid files and locks, orphaned staging tables, old logs
clean: setup
	$(INV) proc.clean

.PHONY: test  ## the quick developer loop: everything but e2e and slow tests, in parallel
test: setup
	$(INV) test --fast

.PHONY: test-ci  ## what CI runs: every test, coverage and performance gates, reports/ for dashboards
test-ci: setup
	$(INV) test --ci

.PHONY: bench  ## benchmarks: ratios to baselines measured in the same run
bench: setup
	$(INV) bench

.PHONY: report  ## the ops report page, var/reports/ops.html: health, runs grid, charts, migrations, plans, deploys
report: setup
	$(INV) report --days $(DAYS)

.PHONY: info  ## the database: engine, version, tables with rows and bytes
info: setup
	$(INV) db.info

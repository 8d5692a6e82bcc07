#!/usr/bin/env bash
# Lint the Python code, and the deployment files without a Docker engine:
#   ruff (format check and lint rules) and mypy (strict; [tool.mypy] in pyproject.toml) on the Python code;
#   hadolint (Dockerfile), check-jsonschema (compose spec, GitHub workflow schema), actionlint (workflows).
#   scripts/lint.sh                      run every linter; exit non-zero on the first failure
#   scripts/lint.sh --actionlint-path    install actionlint if needed and print its path (used by the tests)
# actionlint is built with `go install` at a pinned version into a cache directory (never committed):
#   ${AI_DIARY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-diary-tools}/actionlint-<version>/actionlint
set -euo pipefail

ACTIONLINT_VERSION="v1.7.12"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$root/.venv}"
tools="${AI_DIARY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ai-diary-tools}"
actionlint_dir="$tools/actionlint-$ACTIONLINT_VERSION"
actionlint="$actionlint_dir/actionlint"
# what ruff formats and lints (tests/test_lint.py runs the same commands); mypy reads its files from pyproject.toml
python_paths=(app exporters/src tests bench gunicorn.conf.py)

install_actionlint() {
  if [[ -x "$actionlint" ]]; then
    return 0
  fi
  command -v go >/dev/null || { echo "lint.sh: 'go' not found on PATH (needed to install actionlint)" >&2; exit 2; }
  mkdir -p "$actionlint_dir"
  echo "lint.sh: installing actionlint $ACTIONLINT_VERSION into $actionlint_dir" >&2
  GOBIN="$actionlint_dir" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" >&2
}

if [[ "${1:-}" == "--actionlint-path" ]]; then
  install_actionlint
  echo "$actionlint"
  exit 0
fi

cd "$root"
shopt -s nullglob
workflows=(.github/workflows/*.yml)

echo "== ruff format --check"
"$venv/bin/ruff" format --check "${python_paths[@]}"
echo "== ruff check"
"$venv/bin/ruff" check "${python_paths[@]}"
echo "== mypy"
"$venv/bin/mypy"

install_actionlint
echo "== hadolint Dockerfile"
"$venv/bin/hadolint" Dockerfile
echo "== check-jsonschema: compose spec"
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
echo "== check-jsonschema: GitHub workflows"
"$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "${workflows[@]}"
echo "== actionlint $ACTIONLINT_VERSION"
"$actionlint" "${workflows[@]}"
echo "lint.sh: all clean"

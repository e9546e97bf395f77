#!/usr/bin/env bash
# Installs the external programs the test suite needs into .tools/ (git-ignored),
# once; later runs find them there. Prints nothing but progress on stderr.
#   .tools/bin/minio                       MinIO server (S3 for the store tests)
#   .tools/bin/temporal                    Temporal CLI (dev server and client for the worker tests)
#   .tools/npm/node_modules/node-llama-cpp  llama.cpp's prebuilt CPU libraries (oracle)
#   /usr/bin/chromium                      Debian's chromium (Web UI and report tests;
#                                          apt-get, as root, when it is missing)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.tools"
mkdir -p "$tools/bin"

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
NODE_LLAMA_CPP_VERSION=3.21.1
TEMPORAL_CLI_VERSION=v1.5.1

want() { [ "${1:-all}" = all ] || [ "${1:-all}" = "$2" ]; }

if want "${1:-all}" minio; then
  stamp="$tools/bin/.minio-$MINIO_VERSION"
  if [ ! -x "$tools/bin/minio" ] || [ ! -f "$stamp" ]; then
    echo "tools: building MinIO $MINIO_VERSION (about 3 minutes, once)" >&2
    GOBIN="$tools/bin" go install "github.com/minio/minio@$MINIO_VERSION"
    touch "$stamp"
  fi
fi

if want "${1:-all}" temporal; then
  stamp="$tools/bin/.temporal-$TEMPORAL_CLI_VERSION"
  if [ ! -x "$tools/bin/temporal" ] || [ ! -f "$stamp" ]; then
    echo "tools: building the Temporal CLI $TEMPORAL_CLI_VERSION (several minutes, once)" >&2
    GOBIN="$tools/bin" go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_CLI_VERSION"
    touch "$stamp"
  fi
fi

if want "${1:-all}" llama; then
  lib="$tools/npm/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"
  if [ ! -f "$lib" ] || [ ! -f "$tools/npm/.node-llama-cpp-$NODE_LLAMA_CPP_VERSION" ]; then
    echo "tools: installing node-llama-cpp@$NODE_LLAMA_CPP_VERSION from npm (once)" >&2
    mkdir -p "$tools/npm"
    (cd "$tools/npm" && { [ -f package.json ] || npm init -y >/dev/null; } &&
      npm i -E --no-audit --no-fund "node-llama-cpp@$NODE_LLAMA_CPP_VERSION" >&2)
    touch "$tools/npm/.node-llama-cpp-$NODE_LLAMA_CPP_VERSION"
  fi
fi

if want "${1:-all}" chromium; then
  if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "tools: installing Debian's chromium with apt-get (once)" >&2
      apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
    else
      echo "tools: /usr/bin/chromium is missing and this is not root on Debian; install the chromium package for the browser tests" >&2
    fi
  fi
fi

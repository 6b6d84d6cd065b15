#!/usr/bin/env bash
# Runs the example (examples/state_machine.rs) on a fresh Debian 12 machine: provisions Debian's libmongocrypt
# (libmongocrypt-dev, with libclang-dev and pkg-config for the build) through vendor/provision, then
# `cargo run --example state_machine`. Arguments are passed to the example.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "provisioning: vendor/provision system" >&2
pc_dir=$(vendor/provision system | tail -n1)
echo "libmongocrypt $(pkg-config --modversion libmongocrypt) (pkg-config file in $pc_dir)" >&2
exec cargo run --example state_machine -- "$@"

//! The state-machine runner: drives any `Ctx` to completion through a driver-supplied I/O trait.

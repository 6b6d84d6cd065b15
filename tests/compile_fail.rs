//! The ownership and threading rules of `mongocrypt.h` that the types enforce at compile time: each file in
//! `tests/compile_fail/` is a misuse that must not compile, with the expected error in its `.stderr`.
//!
//! Regenerate the expectations after a compiler or API change with `TRYBUILD=overwrite cargo test --test
//! compile_fail`, then review every diff: each file must fail for its stated reason (the borrow or trait error).

#[test]
fn compile_fail() {
    trybuild::TestCases::new().compile_fail("tests/compile_fail/*.rs");
}

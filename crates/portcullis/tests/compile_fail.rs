//! Type-level guarantees, checked by the compiler (trybuild).

#[test]
fn render_code_cannot_call_mutating_effects() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/render_cannot_mutate.rs");
    t.compile_fail("tests/ui/page_cannot_mutate.rs");
}

#[test]
fn a_handler_must_have_its_handles_types() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/handler_type_must_match_handle.rs");
}

/// The typestate builder's mistakes each give one error that names the fix.
#[test]
fn builder_mistakes_name_the_fix() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/builder_needs_a_policy.rs");
    t.compile_fail("tests/ui/builder_public_needs_a_limit.rs");
    t.compile_fail("tests/ui/builder_policy_before_handler.rs");
}

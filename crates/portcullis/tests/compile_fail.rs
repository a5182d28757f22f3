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

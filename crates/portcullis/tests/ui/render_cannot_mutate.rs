// Render code gets a `RenderCx`, which has no effect methods: expiring a tag,
// setting a cookie or redirecting from a render function does not compile.
use portcullis::{RenderCx, fragment};

fn main() {
    let _ = fragment("f").shared(|rcx: RenderCx<()>, _: String| async move {
        rcx.update_tag("projects");
        Ok(maud::html! {})
    });
}

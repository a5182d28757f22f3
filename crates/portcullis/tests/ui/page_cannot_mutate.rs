// A page handler's `Page` is read-only too.
use portcullis::Page;

async fn handler(page: Page) {
    page.update_tag("projects");
    page.redirect("/elsewhere");
}

fn main() {
    let _ = handler;
}

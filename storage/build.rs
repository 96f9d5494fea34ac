// `sqlx::migrate!` embeds the migration files at compile time; without this a new
// migration would not trigger a rebuild of the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}

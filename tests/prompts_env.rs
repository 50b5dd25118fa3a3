//! `Library::load` reads `$ARBITER_PROMPTS_DIR`. This file holds a single test so that setting
//! the variable cannot race with another test of the same process.

use arbiter::prompts::{Library, Source, PROMPTS_DIR_ENV};

#[test]
fn load_reads_the_prompts_dir_from_the_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("from-env.txt");
    std::fs::write(
        &path,
        "kind: critique\noutput: critique\n---\n{question}\n{answer}",
    )
    .expect("write template");
    std::env::set_var(PROMPTS_DIR_ENV, dir.path());
    assert_eq!(Library::user_dir().as_deref(), Some(dir.path()));
    let lib = Library::load().expect("loads");
    assert_eq!(lib.source("from-env"), Some(&Source::User(path)));
    assert!(lib.get("cj2-critical-thinking").is_ok());

    // An empty value means "not set": the config directory is used instead.
    std::env::set_var(PROMPTS_DIR_ENV, "");
    assert_ne!(Library::user_dir().as_deref(), Some(dir.path()));
    if let Some(user_dir) = Library::user_dir() {
        assert!(
            user_dir.ends_with("arbiter/prompts"),
            "{}",
            user_dir.display()
        );
    }
}

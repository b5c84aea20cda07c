//! `recon check`: every problem listed, exit 0 or 2.

use crate::support::{EXIT_CONSISTENT, EXIT_USAGE, Workdir, assert_exit, stderr, stdout};

const GOOD: &str = "version = 1\nname = \"good\"\n\
    [owner]\ntype = \"csv\"\npath = \"o.csv\"\nkey = [\"id\"]\n\
    [replica]\ntype = \"csv\"\npath = \"r.csv\"\nkey = [\"id\"]\n";

#[test]
fn valid_folder_exits_0_and_touches_no_data() {
    let w = Workdir::new();
    // The data files do not exist: check never opens sources.
    w.write("jobs/good.toml", GOOD);
    w.write("jobs/other.toml", GOOD.replace("\"good\"", "\"other\""));
    let out = w.run(&["check", "jobs"]);
    assert_exit(&out, EXIT_CONSISTENT);
    let text = stdout(&out);
    assert!(text.contains("good") && text.contains("other"), "{text}");
}

#[test]
fn demo_jobs_are_valid() {
    let w = Workdir::new();
    let jobs = format!("{}/jobs", env!("CARGO_MANIFEST_DIR"));
    assert_exit(&w.run(&["check", &jobs]), EXIT_CONSISTENT);
}

#[test]
fn every_problem_is_listed() {
    let w = Workdir::new();
    w.write("jobs/a-good.toml", GOOD);
    w.write(
        "jobs/b-typo.toml",
        "name = \"typo\"\ndescripton = \"x\"\n\
         [owner]\ntype = \"csv\"\npath = \"o.csv\"\nkey = [\"id\"]\n\
         [replica]\ntype = \"csv\"\npath = \"r.csv\"\nkey = [\"id\"]\n",
    );
    w.write(
        "jobs/c-syntax.toml",
        "name = \"syntax\"\n[owner\ntype = \"csv\"\n",
    );
    w.write(
        "jobs/d-env.toml",
        "name = \"env\"\n\
         [owner]\ntype = \"csv\"\npath = \"${RECON_TEST_SURELY_UNSET_VAR}/o.csv\"\nkey = [\"id\"]\n\
         [replica]\ntype = \"csv\"\npath = \"r.csv\"\nkey = [\"id\"]\n",
    );
    w.write(
        "jobs/e-version.toml",
        GOOD.replace("version = 1", "version = 7").replace("good", "ver"),
    );
    let out = w.run(&["check", "jobs"]);
    assert_exit(&out, EXIT_USAGE);
    let err = stderr(&out);
    let line_with = |needle: &str| -> String {
        err.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line mentions {needle:?}:\n{err}"))
            .to_string()
    };
    let typo = line_with("descripton");
    assert!(typo.contains("did you mean"), "{typo}");
    assert!(typo.contains("description"), "{typo}");
    assert!(typo.contains("b-typo.toml"), "{typo}");
    let syntax = line_with("c-syntax.toml");
    assert!(syntax.to_lowercase().contains("syntax"), "{syntax}");
    assert!(syntax.contains("c-syntax.toml:2:"), "line:column: {syntax}");
    let env = line_with("RECON_TEST_SURELY_UNSET_VAR");
    assert!(env.contains("d-env.toml"), "{env}");
    let version = line_with("e-version.toml");
    assert!(version.contains("version"), "{version}");
    assert!(
        !err.contains("a-good.toml"),
        "the valid job is not a problem:\n{err}"
    );
}

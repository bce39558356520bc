//! The command line: output, errors, exit codes.

use crate::{assert_one_line_error, data_arg, fwrepo, image};

fn init(dir: &std::path::Path) -> String {
    let data = data_arg(&dir.join("data"));
    let out = fwrepo(&["init", "--data", &data, "--chunk-min", "2048", "--chunk-avg", "8192", "--chunk-max", "32768"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    data
}

#[test]
fn ingest_prints_ids_and_cat_returns_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let bytes = image(1, 200_000);
    let file = dir.path().join("fw.bin");
    std::fs::write(&file, &bytes).unwrap();
    let out = fwrepo(&["ingest", "--data", &data, file.to_str().unwrap()]);
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let blob = blake3::hash(&bytes).to_hex().to_string();
    assert_eq!(fields[0], blob);
    assert_eq!(fields[1], "200000");
    assert_eq!(fields[5], "200000", "all bytes are new: {line}");

    let again = fwrepo(&["ingest", "--data", &data, "--json", file.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(v["blob"], blob);
    assert_eq!(v["new_bytes"], 0);

    let cat = fwrepo(&["cat", "--data", &data, &blob]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, bytes);
    let part = fwrepo(&["cat", "--data", &data, &blob, "--range", "100-199"]);
    assert_eq!(part.stdout, &bytes[100..200]);
    let tail = fwrepo(&["cat", "--data", &data, &blob, "--range", "199990-"]);
    assert_eq!(tail.stdout, &bytes[199_990..]);

    let fsck = fwrepo(&["fsck", "--data", &data]);
    assert!(fsck.status.success());
    assert!(String::from_utf8_lossy(&fsck.stdout).contains("clean"));
    let stats = fwrepo(&["stats", "--data", &data, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["blobs"], 1);
}

#[test]
fn bad_input_gets_one_line_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let good = dir.path().join("good.bin");
    std::fs::write(&good, image(2, 50_000)).unwrap();

    // A missing file among good ones: nothing is stored.
    let out = fwrepo(&["ingest", "--data", &data, good.to_str().unwrap(), "/nonexistent/fw.bin"]);
    assert_one_line_error(&out, "/nonexistent/fw.bin");
    let stats: serde_json::Value =
        serde_json::from_slice(&fwrepo(&["stats", "--data", &data, "--json"]).stdout).unwrap();
    assert_eq!(stats["blobs"], 0);

    assert_one_line_error(&fwrepo(&["ingest", "--data", &data, dir.path().to_str().unwrap()]), "not a regular file");
    assert_one_line_error(&fwrepo(&["cat", "--data", &data, "abc"]), "malformed id");
    let unknown = blake3::hash(b"nothing").to_hex().to_string();
    assert_one_line_error(&fwrepo(&["cat", "--data", &data, &unknown]), "not in the store");
    let out = fwrepo(&["ingest", "--data", &data, good.to_str().unwrap()]);
    let blob = String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned();
    assert_one_line_error(&fwrepo(&["cat", "--data", &data, &blob, "--range", "10-5"]), "bad range");
    assert_one_line_error(&fwrepo(&["cat", "--data", &data, &blob, "--range", "0-50000"]), "past the end");
    assert_one_line_error(&fwrepo(&["init", "--data", &data]), "already holds");
    let elsewhere = dir.path().join("nothing-here");
    assert_one_line_error(&fwrepo(&["stats", "--data", elsewhere.to_str().unwrap()]), "not an fwrepo data dir");
    assert_one_line_error(
        &fwrepo(&["ingest", "--data", elsewhere.to_str().unwrap(), good.to_str().unwrap()]),
        "not an fwrepo data dir",
    );
    assert!(!elsewhere.exists(), "a failed command created {}", elsewhere.display());
    assert_one_line_error(&fwrepo(&["gc", "--data", &data, "--min-dead-fraction", "2"]), "between 0 and 1");
    let roots = dir.path().join("roots.txt");
    std::fs::write(&roots, "not-an-id\n").unwrap();
    assert_one_line_error(&fwrepo(&["gc", "--data", &data, "--roots", roots.to_str().unwrap()]), "roots.txt:1");

    // The one stored blob is intact after all of that.
    assert!(fwrepo(&["fsck", "--data", &data]).status.success());
}

#[test]
fn a_second_writer_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let _writer = fwrepo_store::Store::open(std::path::Path::new(&data)).unwrap();
    let file = dir.path().join("fw.bin");
    std::fs::write(&file, image(3, 10_000)).unwrap();
    assert_one_line_error(&fwrepo(&["ingest", "--data", &data, file.to_str().unwrap()]), "in use by another writer");
    // Readers are not blocked by the writer.
    assert!(fwrepo(&["stats", "--data", &data]).status.success());
}

#[test]
fn fsck_exits_non_zero_on_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let file = dir.path().join("fw.bin");
    std::fs::write(&file, image(4, 100_000)).unwrap();
    assert!(fwrepo(&["ingest", "--data", &data, file.to_str().unwrap()]).status.success());
    let pack = dir.path().join("data/packs/00000001.pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    let out = fwrepo(&["fsck", "--data", &data]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("corrupt chunk") && text.contains(&blake3::hash(&image(4, 100_000)).to_hex().to_string()),
        "{text}"
    );
}

/// Runs `fwrepo ARGS` with stdout a pipe whose reader has already gone away.
fn with_closed_stdout(args: &[&str]) -> std::process::Output {
    use std::os::fd::{FromRawFd as _, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe(2) just opened both descriptors and nothing else owns them.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    std::process::Command::new(crate::bin()).args(args).stdout(writer).output().expect("fwrepo runs")
}

/// Before the fix, `fwrepo stats | head -0` (or any reader that leaves early) made every
/// command that prints with `println!` panic with "failed printing to stdout" and exit 101.
#[test]
fn stats_on_a_closed_stdout_exits_quietly() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let file = dir.path().join("fw.bin");
    std::fs::write(&file, image(2, 100_000)).unwrap();
    let new_data = data_arg(&dir.path().join("new"));
    let commands: [&[&str]; 7] = [
        &["stats", "--data", &data],
        &["stats", "--data", &data, "--json"],
        &["fsck", "--data", &data],
        &["ingest", "--data", &data, file.to_str().unwrap()],
        &["gc", "--data", &data],
        &["init", "--data", &new_data],
        &["--help"],
    ];
    for args in commands {
        let out = with_closed_stdout(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {:?} {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "{args:?} wrote to stderr: {stderr}");
    }
    // The commands did their work up to the write that found no reader.
    let stats = fwrepo(&["stats", "--data", &data, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(v["blobs"], 1);
    assert!(dir.path().join("new/fwrepo.json").exists());
}

//! What a user reads before a server is involved: each command's help with
//! examples and the exit codes, completion scripts, no colour.

use crate::vkv_with;

const COMMANDS: &[&str] = &[
    "get", "put", "del", "history", "ls", "watch", "changes", "batch", "backup", "lock",
];

/// `vkv lease SUBCOMMAND`.
const LEASE: &[&str] = &["grant", "keepalive", "revoke", "show", "ls"];

#[test]
fn lease_commands_have_examples_and_the_exit_codes_and_are_completed() {
    for sub in LEASE {
        let r = vkv_with(&["lease", sub, "--help"], &[], b"");
        let text = &r.code(0).stdout;
        assert!(text.contains("Examples:"), "lease {sub}: {text}");
        assert!(text.contains(&format!("vkv lease {sub}")), "{sub}: {text}");
        assert!(text.contains("3  not found"), "lease {sub}: {text}");
    }
    let watch = vkv_with(&["watch", "--help"], &[], b"");
    assert!(watch.stdout.contains("--prefix"), "{}", watch.stdout);
    let bash = vkv_with(&["completion", "bash"], &[], b"");
    for word in ["lease", "keepalive", "--every", "--prefix", "lock"] {
        assert!(bash.stdout.contains(word), "{word} not completed");
    }
}

#[test]
fn every_command_has_examples_and_the_exit_codes_in_its_help() {
    for command in COMMANDS {
        for flag in ["--help", "-h"] {
            let r = vkv_with(&[command, flag], &[], b"");
            let text = &r.code(0).stdout;
            assert!(text.contains("Examples:"), "vkv {command} {flag}: {text}");
            assert!(
                text.contains(&format!("vkv {command}")),
                "{command}: {text}"
            );
            for line in [
                "Exit codes:",
                "3  not found",
                "4  condition failed",
                "5  refused",
                "6  unavailable",
            ] {
                assert!(text.contains(line), "vkv {command} {flag}: no {line:?}");
            }
            assert!(text.contains("--endpoints"), "{command}: {text}");
            // The server's own flags are not offered to the client.
            assert!(!text.contains("--db"), "{command}: {text}");
            assert!(!text.contains('\x1b'), "{command}: colour codes");
        }
    }
    let top = vkv_with(&["--help"], &[], b"");
    for command in COMMANDS {
        assert!(top.stdout.contains(&format!("  {command} ")), "{command}");
    }
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let bash = vkv_with(&["completion", "bash"], &[], b"");
    let script = &bash.code(0).stdout;
    assert!(script.contains("complete -F _vkv"), "{script}");
    assert!(script.contains("--endpoints") && script.contains("watch"));
    // bash itself parses it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vkv.bash");
    std::fs::write(&file, script).unwrap();
    let parsed = std::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash");
    assert!(parsed.status.success(), "{parsed:?}");
    let zsh = vkv_with(&["completion", "zsh"], &[], b"");
    assert!(zsh.code(0).stdout.starts_with("#compdef vkv"));
    let fish = vkv_with(&["completion", "fish"], &[], b"");
    assert!(fish.code(0).stdout.contains("complete -c vkv"));
    vkv_with(&["completion", "powershell-9"], &[], b"").code(2);
}

#[test]
fn no_color_or_not_the_output_is_plain_text() {
    for env in [&[][..], &[("NO_COLOR", "1")][..]] {
        let r = vkv_with(&["get", "k", "--endpoints", "http://127.0.0.1:1"], env, b"");
        r.code(6);
        assert!(!r.stderr.contains('\x1b'), "{r:?}");
        let r = vkv_with(&["get"], env, b"");
        r.code(2);
        assert!(!r.stderr.contains('\x1b'), "{r:?}");
    }
}

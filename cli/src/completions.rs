//! `drover completions SHELL` and `drover man`: generated from the clap definitions in `main.rs`
//! (clap_complete, clap_mangen), so they never drift from the real flags.

use std::io::Write;
use std::process::ExitCode;

/// Prints the completion script for `shell` to stdout.
pub fn print_completions(shell: clap_complete::Shell) -> ExitCode {
    let mut command = crate::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "drover", &mut out);
    write_stdout(&out)
}

/// Prints the man page (roff, section 1) to stdout: `drover` and every subcommand.
pub fn print_man_page() -> ExitCode {
    let command = crate::command();
    let mut out = Vec::new();
    if let Err(error) = clap_mangen::Man::new(command.clone()).render(&mut out) {
        eprintln!("drover: man: {error}");
        return ExitCode::FAILURE;
    }
    // Each subcommand's synopsis, description and options, under a heading of its own, so that
    // `man drover` shows every flag.
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let heading = format!(".SH \"DROVER {}\"\n", sub.get_name().to_uppercase());
        out.extend_from_slice(heading.as_bytes());
        let page = clap_mangen::Man::new(sub.clone().bin_name(format!("drover {}", sub.get_name())));
        let rendered = page
            .render_synopsis_section(&mut out)
            .and_then(|()| page.render_description_section(&mut out))
            .and_then(|()| page.render_options_section(&mut out));
        if let Err(error) = rendered {
            eprintln!("drover: man: {error}");
            return ExitCode::FAILURE;
        }
    }
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`drover man | head`) is not worth a word.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("drover: {error}");
            ExitCode::FAILURE
        }
    }
}

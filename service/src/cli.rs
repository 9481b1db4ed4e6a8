//! clap's errors as the one line a usage error gets (exit 64), or nothing for help and version.

/// `Ok(None)`: clap printed help or the version (exit 0). `Err(line)`: a usage error as one line
/// ending in "(see --help)". Callers wrap the line in their own usage error.
pub fn parse<P: clap::Parser>() -> Result<Option<P>, String> {
    parse_from(std::env::args_os())
}

/// [`parse`] over given arguments (tests).
pub fn parse_from<P, I, T>(args: I) -> Result<Option<P>, String>
where
    P: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match P::try_parse_from(args) {
        Ok(p) => Ok(Some(p)),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                let _ = e.print();
                Ok(None)
            }
            _ => Err(usage_line(&e)),
        },
    }
}

/// The first line of clap's message, without its `error: ` prefix.
pub fn usage_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid usage");
    format!("{} (see --help)", first.trim_start_matches("error: "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Demo {
        #[arg(long)]
        port: u16,
    }

    #[test]
    fn a_bad_flag_is_one_line_and_help_is_none() {
        let e = parse_from::<Demo, _, _>(["demo", "--port", "x"]).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        assert!(
            e.starts_with("invalid value 'x' for '--port <PORT>'"),
            "{e}"
        );
        assert!(e.ends_with("(see --help)"), "{e}");
        let ok = parse_from::<Demo, _, _>(["demo", "--port", "9"]).unwrap();
        assert_eq!(ok.unwrap().port, 9);
    }
}

//! `${VAR}` and `${VAR:-default}` expansion in job file strings. Pure: the caller passes
//! the lookup, so tests never touch the process environment.

/// One thing wrong with a string's `${...}` references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvProblem {
    /// `${NAME}` names a variable that is not set and has no default.
    Missing(String),
    /// A `${` that does not form a valid reference; the text says why.
    Malformed(String),
}

/// Expands `${VAR}` and `${VAR:-default}` in `text`.
///
/// A variable name is `[A-Za-z_][A-Za-z0-9_]*`. The default runs to the first `}` and
/// may be empty; it is used when the variable is unset or empty (as in a shell). `$$`
/// and a `$` not followed by `{` are kept as they are (so `$${X}` stays `$${X}`).
///
/// On failure returns every missing variable name, in order of first use and without
/// repeats; a malformed reference (unterminated, or a bad name) adds a message instead.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    expand_checked(text, lookup).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| match p {
                EnvProblem::Missing(name) => name,
                EnvProblem::Malformed(message) => message,
            })
            .collect()
    })
}

/// Like [`expand`], but tells missing variables apart from malformed references.
pub fn expand_checked(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<EnvProblem>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push_str("$$");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(close) = body_start.find('}') else {
            problems.push(EnvProblem::Malformed(format!(
                "unterminated `${{` in `{text}` (expected `${{NAME}}` or `${{NAME:-default}}`)"
            )));
            rest = "";
            break;
        };
        let body = &body_start[..close];
        rest = &body_start[close + 1..];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_var_name(name) {
            problems.push(EnvProblem::Malformed(format!(
                "bad variable reference `${{{body}}}`: a name is letters, digits and `_`, \
                 not starting with a digit (defaults are written `${{NAME:-default}}`)"
            )));
            continue;
        }
        match (lookup(name), default) {
            (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                let missing = EnvProblem::Missing(name.to_string());
                if !problems.contains(&missing) {
                    problems.push(missing);
                }
            }
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.local".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_and_defaults() {
        let cases = [
            ("plain", "plain"),
            ("${HOST}", "db.local"),
            ("pg://${HOST}:5432/x", "pg://db.local:5432/x"),
            ("${PORT:-5432}", "5432"),
            ("${HOST:-other}", "db.local"),
            ("${EMPTY}", ""),
            ("${EMPTY:-fallback}", "fallback"),
            ("a${UNSET:-}b", "ab"),
            ("${X:-a:-b $ {c}", "a:-b $ {c"),
            ("cost $5 and $$ and $", "cost $5 and $$ and $"),
            ("$${HOST}", "$${HOST}"),
            ("$$${HOST}", "$$db.local"),
            ("$$$${HOST}", "$$$${HOST}"),
        ];
        for (text, expected) in cases {
            assert_eq!(expand(text, &env).as_deref(), Ok(expected), "{text}");
        }
    }

    #[test]
    fn lists_every_missing_variable_once() {
        let result = expand("${A}/${HOST}/${B}/${A}/${C:-c}", &env);
        assert_eq!(result, Err(vec!["A".to_string(), "B".to_string()]));
    }

    #[test]
    fn malformed_references_are_errors() {
        for text in ["${HOST", "x ${}", "${1A}", "${A-B}", "${A:default}", "${ A }"] {
            let problems = expand_checked(text, &env).unwrap_err();
            assert!(
                matches!(&problems[0], EnvProblem::Malformed(m) if m.contains("${")),
                "{text}: {problems:?}"
            );
        }
    }
}

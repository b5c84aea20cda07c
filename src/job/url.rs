//! Server connection URLs, kept in a newtype whose `Display` and `Debug` mask the
//! password, so that logs, errors and reports can only ever print the redacted form.

use std::fmt;

/// The mask printed in place of a password.
const MASK: &str = "****";

/// Query parameters that carry secrets and are masked like the password.
const SECRET_PARAMS: [&str; 3] = ["password", "sslpassword", "pass"];

/// A database URL (`postgres://user:secret@host:5432/db`). `Display` and `Debug` print
/// `postgres://user:****@host:5432/db`; only [`RedactedUrl::expose`] gives the real text,
/// for the driver.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// Wraps a URL as written (after `${VAR}` expansion).
    pub fn new(url: impl Into<String>) -> RedactedUrl {
        RedactedUrl(url.into())
    }

    /// The URL with its password, for the database driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The scheme, e.g. `postgres`; empty when the URL has none.
    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map_or("", |(s, _)| s)
    }

    /// `host:port` for messages, with `default_port` when the URL names none.
    pub fn host_port(&self, default_port: u16) -> String {
        let authority = self.authority();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let has_port = match host.rsplit_once(':') {
            Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
            None => false,
        };
        let host = if host.is_empty() { "localhost" } else { host };
        if has_port {
            host.to_owned()
        } else {
            format!("{host}:{default_port}")
        }
    }

    /// The secrets the URL holds (its password and secret query parameters), so that a
    /// driver message quoting one can be scrubbed.
    pub fn secrets(&self) -> Vec<&str> {
        let mut out = Vec::new();
        if let Some((userinfo, _)) = self.authority().rsplit_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                out.push(password);
            }
        }
        out.extend(self.params().filter(|(k, _)| is_secret(k)).map(|(_, v)| v));
        out.retain(|s| !s.is_empty());
        out
    }

    /// Replaces every secret of this URL found in `text` with the mask.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.0, &self.to_string());
        for secret in self.secrets() {
            out = out.replace(secret, MASK);
        }
        out
    }

    /// True when a password holds an unencoded `/`, `?` or `#`, which end the host part
    /// of a URL: `postgres://u:pa/ss@h/db`. Neither the driver nor a reader can tell
    /// where the password ends, so such a URL is refused (and never printed).
    pub fn has_unencoded_password(&self) -> bool {
        let rest = self.0.split_once("://").map_or(self.0.as_str(), |(_, r)| r);
        let authority = self.authority();
        if authority.contains('@') || !rest[authority.len()..].contains('@') {
            return false;
        }
        // `user:pa` before the cut: a port would be digits (or an IPv6 host in brackets).
        match authority.split_once(':') {
            Some((_, after)) => !authority.starts_with('[') && !after.bytes().all(|b| b.is_ascii_digit()),
            None => false,
        }
    }

    /// The part between `://` and the path or query.
    fn authority(&self) -> &str {
        let rest = self.0.split_once("://").map_or(self.0.as_str(), |(_, r)| r);
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        &rest[..end]
    }

    fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .split_once('?')
            .map_or("", |(_, q)| q)
            .split('&')
            .filter_map(|p| p.split_once('='))
    }
}

fn is_secret(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.has_unencoded_password() {
            return write!(f, "{}://{MASK}", self.scheme());
        }
        let (scheme, rest) = match self.0.split_once("://") {
            Some((s, r)) => (Some(s), r),
            None => (None, self.0.as_str()),
        };
        if let Some(scheme) = scheme {
            write!(f, "{scheme}://")?;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => write!(f, "{user}:{MASK}@{host}")?,
                None => write!(f, "{userinfo}@{host}")?,
            },
            None => f.write_str(authority)?,
        }
        let (path, query) = match tail.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (tail, None),
        };
        f.write_str(path)?;
        if let Some(query) = query {
            f.write_str("?")?;
            for (i, param) in query.split('&').enumerate() {
                if i > 0 {
                    f.write_str("&")?;
                }
                match param.split_once('=') {
                    Some((k, _)) if is_secret(k) => write!(f, "{k}={MASK}")?,
                    _ => f.write_str(param)?,
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedactedUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked_in_display_and_debug() {
        let cases = [
            (
                "postgres://user:s3cret@db.example:5432/app",
                "postgres://user:****@db.example:5432/app",
            ),
            (
                "mysql://root@127.0.0.1:3306/test",
                "mysql://root@127.0.0.1:3306/test",
            ),
            (
                "postgres://u:p%40ss@h/db?sslmode=require&password=x2",
                "postgres://u:****@h/db?sslmode=require&password=****",
            ),
            ("postgres://h/db", "postgres://h/db"),
        ];
        for (url, shown) in cases {
            let u = RedactedUrl::new(url);
            assert_eq!(u.to_string(), shown);
            assert_eq!(format!("{u:?}"), format!("RedactedUrl({shown})"));
        }
    }

    #[test]
    fn a_password_with_an_unencoded_path_or_query_character_is_never_shown() {
        for url in [
            "postgres://u:pa/ss@127.0.0.1:1/db",
            "postgres://u:pa?ss@127.0.0.1/db",
            "mysql://root:pa#ss@h:3306/db",
        ] {
            let u = RedactedUrl::new(url);
            assert!(u.has_unencoded_password(), "{url}");
            assert!(!u.to_string().contains("pa"), "{u}");
            assert!(!format!("{u:?}").contains("ss@"), "{u:?}");
        }
        for url in [
            "postgres://u:p%2Fss@h/db",
            "postgres://h:5432/db?application_name=me@host",
            "postgres://[::1]:5432/db?x=a@b",
            "postgres://u:p@ss@h/db",
        ] {
            assert!(!RedactedUrl::new(url).has_unencoded_password(), "{url}");
        }
    }

    #[test]
    fn host_port_and_scrubbing() {
        let u = RedactedUrl::new("postgres://user:s3cret@db.example/app");
        assert_eq!(u.host_port(5432), "db.example:5432");
        assert_eq!(u.scheme(), "postgres");
        assert_eq!(
            RedactedUrl::new("mysql://root@127.0.0.1:3307/x").host_port(3306),
            "127.0.0.1:3307"
        );
        assert_eq!(u.scrub("failed for s3cret at x"), "failed for **** at x");
        assert_eq!(
            u.scrub("bad url postgres://user:s3cret@db.example/app"),
            "bad url postgres://user:****@db.example/app"
        );
    }
}

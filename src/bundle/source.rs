//! Where a bundle comes from: a published directory or an HTTP(S) base URL.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use reqwest::Url;

use super::error::BundleError;

/// A parsed bundle source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A published OUT directory on this machine (`file:///srv/bundle` or `/srv/bundle`).
    Dir(PathBuf),
    /// An OUT directory served over HTTP(S); always ends with `/` so names join under it.
    Http(Url),
}

impl Source {
    /// Parse `file:///path`, a plain path, or an `http://`/`https://` URL.
    pub fn parse(s: &str) -> Result<Source, BundleError> {
        let invalid = |reason: &str| BundleError::InvalidSource {
            source_str: s.to_string(),
            reason: reason.to_string(),
        };
        if s.trim().is_empty() {
            return Err(invalid("empty"));
        }
        if !s.contains("://") {
            return Ok(Source::Dir(PathBuf::from(s)));
        }
        let mut url = Url::parse(s).map_err(|e| invalid(&e.to_string()))?;
        match url.scheme() {
            "file" => {
                if !matches!(url.host_str(), None | Some("") | Some("localhost")) {
                    return Err(invalid(
                        "file:// URLs must name a local path (file:///path)",
                    ));
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid("not a valid local path"))?;
                Ok(Source::Dir(path))
            }
            "http" | "https" => {
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(invalid(
                        "a query or fragment cannot be part of a bundle base URL",
                    ));
                }
                if !url.path().ends_with('/') {
                    let path = format!("{}/", url.path());
                    url.set_path(&path);
                }
                Ok(Source::Http(url))
            }
            other => Err(invalid(&format!(
                "unsupported scheme {other:?}, expected file, http or https"
            ))),
        }
    }

    /// Human-readable location of `name` (relative to the bundle root) for messages.
    pub(crate) fn locate(&self, name: &str) -> String {
        match self {
            Source::Dir(dir) => dir.join(name).display().to_string(),
            Source::Http(base) => format!("{base}{name}"),
        }
    }
}

impl FromStr for Source {
    type Err = BundleError;
    fn from_str(s: &str) -> Result<Source, BundleError> {
        Source::parse(s)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Dir(dir) => write!(f, "{}", dir.display()),
            Source::Http(url) => write!(f, "{}", RedactedUrl(url.as_str())),
        }
    }
}

/// A URL (or a path) as every message, report and log shows it: credentials in it
/// (`https://user:password@host/`) become `***`, since messages end up in logs, CI output
/// and reports sent elsewhere. Requests use the URL itself.
#[derive(Debug, Clone, Copy)]
pub struct RedactedUrl<'a>(pub &'a str);

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if let Some(scheme) = text.find("://") {
            let (head, rest) = text.split_at(scheme + 3);
            let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
            if let Some(at) = authority.rfind('@') {
                return write!(f, "{head}***{}", &rest[at..]);
            }
        }
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(
            Source::parse("/srv/b").unwrap(),
            Source::Dir("/srv/b".into())
        );
        assert_eq!(
            Source::parse("file:///srv/my%20b").unwrap(),
            Source::Dir("/srv/my b".into())
        );
        assert_eq!(
            Source::parse("https://cdn.example/b").unwrap().to_string(),
            "https://cdn.example/b/"
        );
        assert_eq!(
            Source::parse("http://h:8080/x/")
                .unwrap()
                .locate("manifest.json"),
            "http://h:8080/x/manifest.json"
        );
    }

    #[test]
    fn credentials_are_never_shown() {
        for (url, shown) in [
            ("https://u:p%40ss@h:8/b/x", "https://***@h:8/b/x"),
            ("http://token@h/", "http://***@h/"),
            ("https://h/b/a@b", "https://h/b/a@b"),
            ("/srv/a@b", "/srv/a@b"),
        ] {
            assert_eq!(RedactedUrl(url).to_string(), shown);
        }
        let source = Source::parse("https://u:secret@cdn.example/b").unwrap();
        assert_eq!(source.to_string(), "https://***@cdn.example/b/");
        assert_eq!(
            Source::parse("https://u:secret@h/b?x=1")
                .unwrap_err()
                .to_string(),
            "invalid source \"https://***@h/b?x=1\": a query or fragment cannot be part of a bundle base URL"
        );
    }

    #[test]
    fn rejects_other_schemes_and_remote_files() {
        for (s, why) in [
            ("ftp://h/b", "unsupported scheme \"ftp\""),
            ("file://otherhost/b", "must name a local path"),
            ("https://h/b?x=1", "query or fragment"),
            ("", "empty"),
        ] {
            let e = Source::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}

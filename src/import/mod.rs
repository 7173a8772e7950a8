//! `ai-gateway import`: turns another gateway's configuration file into one of ours
//! (`shared/spec/config.md`), printed as commented YAML, with a note for every setting that could
//! not be carried over. One submodule per source format ([`litellm`]); [`source`] reads the
//! foreign YAML, [`emit`] writes ours. Nothing here runs in the gateway itself.

mod emit;
pub mod litellm;
mod source;

use std::fmt;

/// A converted configuration.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The YAML text of the new configuration file.
    pub yaml: String,
    /// Settings of the source that were not carried over, or carried over with a caveat, in the
    /// order they were met.
    pub notes: Vec<Note>,
}

/// One setting of the source and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Key path in the source file, e.g. `router_settings.retry_policy`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Note {
    /// `router_settings.retry_policy: not carried over: …`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a file could not be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("not a LiteLLM proxy configuration: {0}")]
    NotLitellm(String),
}

/// Collects the notes of one conversion.
#[derive(Debug, Default)]
struct Notes(Vec<Note>);

impl Notes {
    /// A setting that was left out: `not carried over: WHY`.
    fn skip(&mut self, path: impl Into<String>, why: impl fmt::Display) {
        self.0.push(Note {
            path: path.into(),
            message: format!("not carried over: {why}"),
        });
    }

    /// A setting that was carried over with a caveat the user should know.
    fn note(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Note {
            path: path.into(),
            message: message.into(),
        });
    }
}

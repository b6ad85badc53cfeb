//! File names: the one kind of name a store keeps and the transfer protocol
//! and TFTP carry, valid by construction. Its own module, so that the stores
//! and the protocols share it without either knowing of the other; the public
//! paths are `store::FileName` and `wire::transfer::FileName`.

use core::fmt;

/// The longest valid file name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Why a byte string is not a valid file name (`PROTOCOL.md` section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NameError {
    /// No bytes at all.
    Empty,
    /// More than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// The length that was offered.
        len: usize,
    },
    /// The bytes are not UTF-8.
    NotUtf8,
    /// Begins with `.`: this refuses `.` and `..`, and keeps hidden names for the
    /// store's partial uploads.
    LeadingDot,
    /// Contains `/` or `\`: a path, not a name.
    Separator,
    /// Contains NUL or another control character.
    ControlChar,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("file name is empty"),
            Self::TooLong { len } => {
                write!(f, "file name is {len} bytes, over {MAX_NAME_LEN}")
            }
            Self::NotUtf8 => f.write_str("file name is not UTF-8"),
            Self::LeadingDot => f.write_str("file name begins with '.'"),
            Self::Separator => f.write_str("file name contains '/' or '\\'"),
            Self::ControlChar => f.write_str("file name contains a control character"),
        }
    }
}

impl core::error::Error for NameError {}

/// A valid plain file name: 1 to 64 bytes of UTF-8, no `/`, `\` or control
/// characters, not beginning with `.`.
///
/// The only way to get one is through validation ([`FileName::new`],
/// [`FileName::from_bytes`]), so code holding a `FileName` may join it to a
/// directory without checking again. It is stored inline (65 bytes), so it can be
/// kept in fixed memory and copied freely.
///
/// ```
/// use smolsock::wire::transfer::{FileName, NameError};
///
/// assert_eq!(FileName::new("notes.txt").unwrap().as_str(), "notes.txt");
/// assert_eq!(FileName::new("../etc/passwd"), Err(NameError::LeadingDot));
/// assert_eq!(FileName::new("logs/today"), Err(NameError::Separator));
/// ```
#[derive(Clone, Copy)]
pub struct FileName {
    len: u8,
    /// The name in `bytes[..len]`; the rest stays zero.
    bytes: [u8; MAX_NAME_LEN],
}

impl FileName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        Self::from_bytes(name.as_bytes())
    }

    /// Validates raw bytes, as they arrive on the wire.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NameError> {
        if bytes.is_empty() {
            return Err(NameError::Empty);
        }
        if bytes.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong { len: bytes.len() });
        }
        let text = core::str::from_utf8(bytes).map_err(|_| NameError::NotUtf8)?;
        if text.starts_with('.') {
            return Err(NameError::LeadingDot);
        }
        for c in text.chars() {
            if c == '/' || c == '\\' {
                return Err(NameError::Separator);
            }
            // Cc: U+0000..=U+001F, U+007F, U+0080..=U+009F.
            if c.is_control() {
                return Err(NameError::ControlChar);
            }
        }
        let mut stored = [0u8; MAX_NAME_LEN];
        let len = u8::try_from(bytes.len()).map_err(|_| NameError::TooLong { len: bytes.len() })?;
        stored
            .get_mut(..bytes.len())
            .ok_or(NameError::TooLong { len: bytes.len() })?
            .copy_from_slice(bytes);
        Ok(Self { len, bytes: stored })
    }

    /// The name's bytes (valid UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Validated at construction; the fallback is never taken.
        core::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl PartialEq for FileName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for FileName {}

impl PartialOrd for FileName {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Byte order, as LIST sorts names.
impl Ord for FileName {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl core::hash::Hash for FileName {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FileName").field(&self.as_str()).finish()
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for FileName {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.as_str());
    }
}

impl TryFrom<&str> for FileName {
    type Error = NameError;

    fn try_from(name: &str) -> Result<Self, NameError> {
        Self::new(name)
    }
}

impl TryFrom<&[u8]> for FileName {
    type Error = NameError;

    fn try_from(bytes: &[u8]) -> Result<Self, NameError> {
        Self::from_bytes(bytes)
    }
}

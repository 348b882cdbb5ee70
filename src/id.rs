//! Typed 32-byte identifiers.
//!
//! Every object in a repository is named by 32 bytes: chunks and trees by their keyed BLAKE3
//! hash, packs by the plain BLAKE3 hash of their trailer, sets by the hash of their
//! manifest. The wrappers keep a `PackId` from being passed where a `ChunkId` is expected;
//! raw arrays and hex strings stay inside this module and the encoders.

use std::fmt;
use std::str::FromStr;

/// Lowercase hex of any bytes.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(2 * b.len());
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// The bytes of an even-length hex string, or `None`.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// The raw 32-byte identifier shared by every typed id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    pub const LEN: usize = 32;

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The id an object is named by: exactly its lowercase hex form (`from_hex` also takes
    /// uppercase digits, under which name the object would not be found again).
    pub fn from_name(s: &str) -> Option<Id> {
        Id::from_hex(s).filter(|id| id.to_hex() == s)
    }

    pub fn from_hex(s: &str) -> Option<Id> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Id(out))
    }

    pub fn from_slice(b: &[u8]) -> Option<Id> {
        <[u8; 32]>::try_from(b).ok().map(Id)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// First 8 bytes as an integer; ids are uniform hashes, so this is a good filter hash.
    pub fn prefix_u64(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default,
                 serde::Serialize, serde::Deserialize)]
        #[serde(into = "String", try_from = "String")]
        pub struct $name(pub Id);

        impl $name {
            pub fn to_hex(&self) -> String { self.0.to_hex() }
            pub fn as_bytes(&self) -> &[u8; 32] { self.0.as_bytes() }
            pub fn from_slice(b: &[u8]) -> Option<Self> { Id::from_slice(b).map($name) }
            /// The id of an object named by it (see [`Id::from_name`]).
            pub fn from_name(s: &str) -> Option<Self> { Id::from_name(s).map($name) }
            /// The short form shown to users (first 8 hex digits).
            pub fn short(&self) -> String { self.0.to_hex()[..8].to_string() }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { fmt::Display::fmt(&self.0, f) }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String { v.0.to_hex() }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Id::from_hex(&s).map($name).ok_or_else(|| format!("not a 64-digit hex id: {s:?}"))
            }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> { Self::try_from(s.to_string()) }
        }
    };
}

typed_id!(
    /// Keyed BLAKE3 of a chunk's uncompressed bytes.
    ChunkId
);
typed_id!(
    /// Keyed BLAKE3 of an encoded tree blob (trees are stored as chunks of kind `Tree`).
    TreeId
);
typed_id!(
    /// Plain BLAKE3 of a pack's trailer (entries and footer); also its file name.
    PackId
);
typed_id!(
    /// Plain BLAKE3 of a set manifest file; also its file name under `sets/`.
    SetId
);

impl TreeId {
    /// Trees are stored in packs like any chunk; this is the id they are stored under.
    pub fn as_chunk(&self) -> ChunkId {
        ChunkId(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_bad_text() {
        let id = Id(*blake3::hash(b"x").as_bytes());
        assert_eq!(Id::from_hex(&id.to_hex()), Some(id));
        assert_eq!(Id::from_hex("zz"), None);
        assert_eq!(Id::from_hex(&"g".repeat(64)), None);
        let s: SetId = id.to_hex().parse().unwrap();
        assert_eq!(s.0, id);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", id.to_hex()));
    }

    #[test]
    fn an_object_name_is_only_the_lowercase_hex_form() {
        let id = Id(*blake3::hash(b"y").as_bytes());
        assert_eq!(PackId::from_name(&id.to_hex()), Some(PackId(id)));
        let upper = id.to_hex().to_uppercase();
        assert_eq!(Id::from_hex(&upper), Some(id), "from_hex is lenient");
        assert_eq!(PackId::from_name(&upper), None, "but no object is named so");
        assert_eq!(Id::from_name(&id.to_hex()[..63]), None);
        assert_eq!(Id::from_name(&format!("+{}", &id.to_hex()[1..])), None);
    }
}

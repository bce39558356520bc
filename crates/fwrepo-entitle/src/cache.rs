//! A bounded cache of tokens whose signature has been verified, so repeated requests with the
//! same token cost a short keyed hash, a map lookup and a comparison of the token bytes instead
//! of an Ed25519 verification.
//!
//! Only the signature check is cached. On every hit the claims are checked again against the
//! verifier passed in — expiry, audience, issuer, revocation by jti and subject, and that the
//! signing kid still names the same key — so a new revocation list or keyring takes effect on
//! the next request without clearing anything. Those checks are a few hash lookups.
//!
//! Entries live no longer than their token's `exp` (the leeway is not extended to cache hits;
//! a token in its leeway window is re-verified in full). When a shard is full, expired entries
//! are swept and, if none were, an arbitrary one is evicted: hashes are uniformly spread, so
//! this approximates random eviction without the bookkeeping of an LRU.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use crate::time::UnixTime;
use crate::token::{Claims, Scope};
use crate::verify::{MAX_TOKEN_LEN, Reject, Verifier};

/// Independent locks, so that threads serving different tokens rarely contend.
const SHARDS: usize = 16;

/// How many bytes at the end of a token its table hash covers: part of the Ed25519
/// signature, which differs between any two tokens the issuer signed.
const HASHED_TAIL: usize = 48;

/// The table hash of a token: keyed SipHash of its length and last [`HASHED_TAIL`] bytes.
///
/// Not a cache key on its own: a hit also needs the whole token to equal the entry's, byte for
/// byte, so two tokens that share a tail (a forged token that reuses a real signature) are
/// simply different tokens. Only tokens whose signature verified are ever stored, and the hash
/// is keyed per cache, so callers cannot steer stored tokens into one slot.
fn table_hash(hasher: &RandomState, token: &[u8]) -> u64 {
    let tail = &token[token.len().saturating_sub(HASHED_TAIL)..];
    let mut h = hasher.build_hasher();
    h.write_usize(token.len());
    h.write(tail);
    h.finish()
}

/// A map keyed by an already computed table hash.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached if something other than a `u64` is hashed; FNV-1a keeps it correct.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry {
    /// The token itself: a hit needs the request's token to be these bytes.
    token: Box<[u8]>,
    claims: Arc<Claims>,
    kid: String,
    key: [u8; 32],
    /// The entry is not used at or after this time: the token's `exp`.
    until: UnixTime,
}

type Shard = HashMap<u64, Arc<Entry>, BuildHasherDefault<PassThrough>>;

/// A thread-safe, bounded cache of verified tokens. Share one per server (`Arc` or a static).
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl TokenCache {
    /// A cache holding about `capacity` tokens (at least one per shard).
    pub fn new(capacity: usize) -> TokenCache {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        TokenCache { shards, per_shard, hasher: RandomState::new() }
    }

    /// [`Verifier::verify`], with the signature check skipped for tokens verified before.
    pub fn verify<S: AsRef<str>>(
        &self,
        verifier: &Verifier,
        token: &str,
        now: UnixTime,
        required: Scope,
        blob_models: &[S],
    ) -> Result<Arc<Claims>, Reject> {
        let claims = self.authenticate(verifier, token, now)?;
        claims.authorize(required, blob_models)?;
        Ok(claims)
    }

    /// [`Verifier::authenticate`] through the cache.
    pub fn authenticate(&self, verifier: &Verifier, token: &str, now: UnixTime) -> Result<Arc<Claims>, Reject> {
        self.authenticate_traced(verifier, token, now).0
    }

    /// [`TokenCache::authenticate`], also telling whether the signature check was skipped
    /// because the token was cached (`true`), for a server's metrics.
    pub fn authenticate_traced(
        &self,
        verifier: &Verifier,
        token: &str,
        now: UnixTime,
    ) -> (Result<Arc<Claims>, Reject>, bool) {
        let mut hit = false;
        let result = self.authenticate_inner(verifier, token, now, &mut hit);
        (result, hit)
    }

    fn authenticate_inner(
        &self,
        verifier: &Verifier,
        token: &str,
        now: UnixTime,
        hit_out: &mut bool,
    ) -> Result<Arc<Claims>, Reject> {
        // Hashing 8 KiB is cheap, but there is no reason to do it for a token we refuse anyway.
        if token.len() > MAX_TOKEN_LEN {
            return Err(Reject::TooLarge);
        }
        let key = table_hash(&self.hasher, token.as_bytes());
        let shard = &self.shards[(key >> 56) as usize % SHARDS];
        let hit = {
            let mut map = lock(shard);
            match map.get(&key) {
                // Another token with the same table hash: a miss (and, if it verifies, it
                // takes the slot).
                Some(e) if *e.token != *token.as_bytes() => None,
                Some(e) if now < e.until => Some(Arc::clone(e)),
                Some(_) => {
                    map.remove(&key);
                    None
                }
                None => None,
            }
        };
        if let Some(entry) = hit {
            *hit_out = true;
            if !verifier.trusts(&entry.kid, &entry.key) {
                return Err(Reject::UnknownKey);
            }
            verifier.check_claims(&entry.claims, now)?;
            return Ok(Arc::clone(&entry.claims));
        }

        let verified = verifier.check_signature(token)?;
        verifier.check_claims(&verified.claims, now)?;
        let claims = Arc::new(verified.claims);
        if now < claims.exp {
            let entry = Arc::new(Entry {
                token: token.as_bytes().into(),
                claims: Arc::clone(&claims),
                kid: verified.kid,
                key: verified.key,
                until: claims.exp,
            });
            let mut map = lock(shard);
            if map.len() >= self.per_shard && !map.contains_key(&key) {
                map.retain(|_, e| now < e.until);
                if map.len() >= self.per_shard {
                    let victim = *map.keys().next().expect("a full shard has a key");
                    map.remove(&victim);
                }
            }
            map.insert(key, entry);
        }
        Ok(claims)
    }

    /// Entries held, expired ones included until they are swept.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries the cache holds.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// Drops every entry.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            lock(s).clear();
        }
    }
}

/// Locks a shard. A panic while holding the lock cannot leave a map half-updated in a way that
/// matters (every entry is independently valid), so a poisoned lock is simply taken over.
fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(|p| p.into_inner())
}

//! The streamer's view of the store: which streams the projects of a batch have, and their
//! destinations, with as few paid calls as possible.
//!
//! - Every project of a batch missing from the cache is looked up in one
//!   [`StreamLookup::get_many`] (one BatchGetItem per 100 projects), unless the store's index
//!   of configured projects ([`StreamLookup::configured`], read once per TTL) says it has no
//!   stream: then nothing is read for it, so reads do not grow with the projects that never
//!   configured streaming. Without an index (not built, or its read failed), every project is
//!   looked up, as before, until the next TTL.
//! - Answers, "not configured" included, are cached for `CONFIG_CACHE_TTL_SECONDS`: most
//!   traffic comes from projects that never configured streaming. Errors are not cached.
//!   An answer is dated from when its read began, not when it came back: a read that
//!   started before an enable may return the stream still disabled, and it must not be
//!   trusted past the enable's margin (the config API dates an enable one TTL ahead), or
//!   events sent after `enabled_at` would be skipped.
//! - Every read ends by the deadline it is given; a project whose part of the read failed or
//!   ran out of time is `Unavailable`, and only its records are retried.
//! - Credentials are cached by (secret, version) for the life of the container and read only
//!   for ACTIVE streams: Secrets Manager is called once per credential version, and never
//!   for a project without a configuration.
//! - Both caches are LRUs of `CONFIG_CACHE_SIZE` entries, so memory stays bounded whatever the
//!   number of projects.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use lru::LruCache;
use tokio::time::Instant;

use super::{CredentialRead, Found, StoredStream, StreamLookup, error_chain, joined};
use crate::clock::Clock;
use crate::domain::controls::Redactor;
use crate::domain::{Destination, ProjectId, StreamSecret, StreamingStatus};

/// A project's stream, with its destination when it is ACTIVE, and its redactor when it
/// redacts: both made once per configuration version and credential, not per batch.
#[derive(Debug)]
pub struct ResolvedStream {
    pub stored: Arc<StoredStream>,
    pub destination: Option<Destination>,
    pub redactor: Option<Redactor>,
}

#[derive(Debug, Clone)]
pub enum Resolved {
    NotConfigured,
    Stream(Arc<ResolvedStream>),
    /// An ACTIVE stream whose credential could not be read (or does not fit its endpoint):
    /// its records are retried later, and its delivery health says why.
    NoCredential {
        stored: Arc<StoredStream>,
        error: String,
    },
    /// The store could not say: the records are retried later.
    Unavailable(String),
}

struct CachedStream {
    fetched: Instant,
    entry: Entry,
}

enum Entry {
    NotConfigured,
    /// Read from the store; its destination is not assembled yet (or could not be).
    Stored(Arc<StoredStream>),
    /// With its destination: later batches reuse it instead of assembling it again.
    Resolved(Arc<ResolvedStream>),
}

/// Credential reads in flight at once. A new container meets every configured project of
/// its first batch at once: unbounded, each read held an HTTP connection and its buffers
/// (hundreds of them for a 6 MB batch, 15 MB of memory measured under massif).
const CONCURRENT_CREDENTIAL_READS: usize = 32;
/// How long past its deadline a lookup is waited for before its projects are given up.
const LOOKUP_GRACE: Duration = Duration::from_millis(250);
type CredentialKey = (String, String);

pub struct StreamDirectory {
    lookup: Arc<dyn StreamLookup>,
    credentials: Arc<dyn CredentialRead>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    streams: Mutex<LruCache<ProjectId, CachedStream>>,
    secrets: Mutex<LruCache<CredentialKey, StreamSecret>>,
    index: Mutex<Option<CachedIndex>>,
}

/// The configured projects as the store's index last said, dated like a stream entry.
struct CachedIndex {
    fetched: Instant,
    /// `None`: no index to trust until the next read.
    projects: Option<Arc<HashSet<ProjectId>>>,
}

impl StreamDirectory {
    pub fn new(
        lookup: Arc<dyn StreamLookup>,
        credentials: Arc<dyn CredentialRead>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
        capacity: NonZeroUsize,
    ) -> Self {
        Self {
            lookup,
            credentials,
            clock,
            ttl,
            streams: Mutex::new(LruCache::new(capacity)),
            secrets: Mutex::new(LruCache::new(capacity)),
            index: Mutex::new(None),
        }
    }

    /// The configured projects, from the cached index while it is younger than the TTL, else
    /// read again (by `deadline`), with when the read began. `None` when the store keeps no
    /// index or it could not be read: the answer holds for a TTL either way, so a failing
    /// index costs one attempt per TTL, not one per batch.
    async fn index(&self, deadline: Instant) -> (Option<Arc<HashSet<ProjectId>>>, Instant) {
        let now = self.clock.now();
        if let Some(cached) = self.index.lock().unwrap().as_ref()
            && now < cached.fetched + self.ttl
        {
            return (cached.projects.clone(), cached.fetched);
        }
        let read = self.lookup.configured(deadline);
        let projects = match tokio::time::timeout_at(deadline + LOOKUP_GRACE, read).await {
            Ok(Ok(projects)) => projects.map(Arc::new),
            Ok(Err(err)) => {
                tracing::warn!(error = %error_chain(&err), "the index of configured projects could not be read; every project is looked up");
                None
            }
            Err(_) => {
                tracing::warn!(
                    "the index of configured projects did not answer in time; every project is looked up"
                );
                None
            }
        };
        *self.index.lock().unwrap() = Some(CachedIndex {
            fetched: now,
            projects: projects.clone(),
        });
        (projects, now)
    }

    /// Every project's stream, read by `deadline`; `projects` holds no duplicates.
    pub async fn resolve(
        &self,
        projects: &[ProjectId],
        deadline: Instant,
    ) -> HashMap<ProjectId, Resolved> {
        let mut resolved = HashMap::with_capacity(projects.len());
        let mut to_assemble: Vec<(ProjectId, Arc<StoredStream>)> = Vec::new();
        let mut missing = Vec::new();
        let now = self.clock.now();
        {
            let mut cache = self.streams.lock().unwrap();
            for project in projects {
                match cache.get(project) {
                    Some(cached) if now < cached.fetched + self.ttl => match &cached.entry {
                        Entry::NotConfigured => {
                            resolved.insert(project.clone(), Resolved::NotConfigured);
                        }
                        Entry::Stored(stream) => {
                            to_assemble.push((project.clone(), stream.clone()))
                        }
                        Entry::Resolved(stream) => {
                            resolved.insert(project.clone(), Resolved::Stream(stream.clone()));
                        }
                    },
                    _ => missing.push(project.clone()),
                }
            }
        }
        if !missing.is_empty()
            && let (Some(configured), fetched) = self.index(deadline).await
        {
            // Projects the index does not list have no stream: no read, and an answer dated
            // from the index's read.
            let mut cache = self.streams.lock().unwrap();
            missing.retain(|project| {
                let listed = configured.contains(project);
                if !listed {
                    resolved.insert(project.clone(), Resolved::NotConfigured);
                    let entry = Entry::NotConfigured;
                    cache.put(project.clone(), CachedStream { fetched, entry });
                }
                listed
            });
        }
        if !missing.is_empty() {
            // Dated from before the read: see the module's comment.
            let fetched = self.clock.now();
            // The port ends its read by the deadline; this is the backstop for one that does
            // not, a little later so that a port's own partial answer wins.
            let read = self.lookup.get_many(&missing, deadline);
            let found = match tokio::time::timeout_at(deadline + LOOKUP_GRACE, read).await {
                Ok(found) => found,
                Err(_) => Found {
                    streams: Vec::new(),
                    unread: missing
                        .iter()
                        .map(|p| (p.clone(), "the lookup did not finish in time".to_owned()))
                        .collect(),
                },
            };
            let mut streams: HashMap<ProjectId, Arc<StoredStream>> = found
                .streams
                .into_iter()
                .map(|s| (s.config.project_id.clone(), Arc::new(s)))
                .collect();
            let mut unread: HashMap<ProjectId, String> = found.unread.into_iter().collect();
            let mut cache = self.streams.lock().unwrap();
            for project in missing {
                let entry = if let Some(why) = unread.remove(&project) {
                    resolved.insert(project, Resolved::Unavailable(why));
                    continue;
                } else if let Some(stream) = streams.remove(&project) {
                    to_assemble.push((project.clone(), stream.clone()));
                    Entry::Stored(stream)
                } else {
                    resolved.insert(project.clone(), Resolved::NotConfigured);
                    Entry::NotConfigured
                };
                cache.put(project, CachedStream { fetched, entry });
            }
        }
        let assembled: Vec<(ProjectId, Resolved)> = stream::iter(to_assemble)
            .map(|(project, stream)| async move {
                let resolved = self.with_destination(&stream, deadline).await;
                if let Resolved::Stream(stream) = &resolved {
                    self.remember(&project, stream);
                }
                (project, resolved)
            })
            .buffer_unordered(CONCURRENT_CREDENTIAL_READS)
            .collect()
            .await;
        resolved.extend(assembled);
        resolved
    }

    async fn with_destination(&self, stream: &Arc<StoredStream>, deadline: Instant) -> Resolved {
        let config = &stream.config;
        if config.state.status != StreamingStatus::Active {
            return Resolved::Stream(Arc::new(ResolvedStream {
                stored: Arc::clone(stream),
                destination: None,
                redactor: None,
            }));
        }
        let key = (
            config.credential.secret_id.clone(),
            config.credential.version_id.clone(),
        );
        let cached = self.secrets.lock().unwrap().get(&key).cloned();
        let no_credential = |error: String| Resolved::NoCredential {
            stored: Arc::clone(stream),
            error,
        };
        let secret = match cached {
            Some(secret) => secret,
            None => {
                let read = self.credentials.get(&config.credential);
                match tokio::time::timeout_at(deadline, read).await {
                    Ok(Ok(secret)) => {
                        self.secrets.lock().unwrap().put(key, secret.clone());
                        secret
                    }
                    Ok(Err(err)) => return no_credential(error_chain(&err)),
                    Err(_) => {
                        return no_credential("the credential read did not finish in time".into());
                    }
                }
            }
        };
        match joined(config, secret) {
            Ok((destination, redactor)) => Resolved::Stream(Arc::new(ResolvedStream {
                stored: Arc::clone(stream),
                destination: Some(destination),
                redactor,
            })),
            Err(err) => no_credential(error_chain(&err)),
        }
    }

    /// Keeps the assembled stream with its cache entry, if the entry still holds that stream.
    fn remember(&self, project: &ProjectId, resolved: &Arc<ResolvedStream>) {
        let mut cache = self.streams.lock().unwrap();
        if let Some(cached) = cache.peek_mut(project)
            && let Entry::Stored(stream) = &cached.entry
            && Arc::ptr_eq(stream, &resolved.stored)
        {
            cached.entry = Entry::Resolved(resolved.clone());
        }
    }

    /// Forgets a project's stream, so that the next batch reads it again (after this
    /// container changed it).
    pub fn forget(&self, project: &ProjectId) {
        self.streams.lock().unwrap().pop(project);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::Secret;
    use crate::domain::{CredentialRef, Endpoint, LokiHostname, StreamConfig, StreamingStatus};
    use crate::store::StoreError;
    use crate::store::{CredentialWrite, MemoryStateStore, StreamWrite};

    /// Counts the calls that cost money.
    #[derive(Default)]
    struct Counting {
        store: MemoryStateStore,
        lookups: AtomicUsize,
        credential_reads: AtomicUsize,
    }

    #[async_trait]
    impl StreamLookup for Counting {
        async fn get_many(&self, projects: &[ProjectId], deadline: Instant) -> Found {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.store.get_many(projects, deadline).await
        }
    }

    #[async_trait]
    impl CredentialRead for Counting {
        async fn get(&self, credential: &CredentialRef) -> Result<StreamSecret, StoreError> {
            self.credential_reads.fetch_add(1, Ordering::SeqCst);
            CredentialRead::get(&self.store, credential).await
        }
    }

    async fn configure(counting: &Counting, project: &ProjectId, active: bool) -> StreamConfig {
        let credential = counting
            .store
            .create_secret(
                project,
                "stream",
                &Secret::new("glc_token-0123456789").into(),
            )
            .await
            .unwrap();
        let endpoint = Endpoint::GrafanaLoki {
            hostname: LokiHostname::parse("logs.example.com").unwrap(),
            username: "u".into(),
            tenant_id: None,
            labels: Default::default(),
        };
        let now = datetime!(2026-11-24 10:00 UTC);
        let mut config = StreamConfig::new(project.clone(), endpoint, credential, now);
        if active {
            config.state = config.state.enable(now, time::Duration::ZERO).unwrap();
        }
        counting.store.create(&config).await.unwrap();
        config
    }

    fn directory(counting: &Arc<Counting>, ttl: Duration, capacity: usize) -> StreamDirectory {
        StreamDirectory::new(
            counting.clone(),
            counting.clone(),
            crate::clock::system(),
            ttl,
            NonZeroUsize::new(capacity).unwrap(),
        )
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn ids(names: &[&str]) -> Vec<ProjectId> {
        names.iter().map(|n| ProjectId::parse(n).unwrap()).collect()
    }

    /// Answers what the store held when the read began, two seconds later: a slow read
    /// that crosses a change.
    struct SlowSnapshot(Arc<Counting>);

    #[async_trait]
    impl StreamLookup for SlowSnapshot {
        async fn get_many(&self, projects: &[ProjectId], deadline: Instant) -> Found {
            let found = self.0.get_many(projects, deadline).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            found
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_enable_is_not_hidden_by_a_lookup_that_began_before_it() {
        let ttl = Duration::from_secs(30);
        let counting = Arc::new(Counting::default());
        let project = ids(&["p"]);
        let config = configure(&counting, &project[0], false).await;
        let clock = Arc::new(crate::clock::PausedClock::starting_at(config.created_at));
        let directory = StreamDirectory::new(
            Arc::new(SlowSnapshot(counting.clone())),
            counting.clone(),
            clock.clone(),
            ttl,
            NonZeroUsize::new(10).unwrap(),
        );
        let status = |resolved: &HashMap<ProjectId, Resolved>| match &resolved[&project[0]] {
            Resolved::Stream(stream) => stream.stored.config.state.status,
            other => panic!("expected a stream, got {other:?}"),
        };

        // The read begins; a second later the customer enables the stream, dated one TTL
        // ahead as the config API does; the read comes back with the old status.
        let enable = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut enabled = config.next_version(clock.utc());
            enabled.state = config
                .state
                .enable(clock.utc(), time::Duration::try_from(ttl).unwrap())
                .unwrap();
            counting
                .store
                .update(&enabled, config.version)
                .await
                .unwrap();
            enabled
        };
        let (first, enabled) = tokio::join!(directory.resolve(&project, far()), enable);
        assert_eq!(status(&first), StreamingStatus::Disabled);

        // At `enabled_at` the stale answer must be gone: it is dated from when its read
        // began, one TTL before, not from when it came back.
        let enabled_at = enabled.state.enabled_at.unwrap();
        tokio::time::advance((enabled_at - clock.utc()).try_into().unwrap()).await;
        let at_enable = directory.resolve(&project, far()).await;
        assert_eq!(status(&at_enable), StreamingStatus::Active);
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_batch_costs_one_lookup_and_credentials_are_read_once_per_version() {
        let counting = Arc::new(Counting::default());
        let projects = ids(&["on", "off", "none"]);
        configure(&counting, &projects[0], true).await;
        configure(&counting, &projects[1], false).await;
        let directory = directory(&counting, Duration::ZERO, 100);

        for _ in 0..3 {
            let resolved = directory.resolve(&projects, far()).await;
            assert!(
                matches!(&resolved[&projects[0]], Resolved::Stream(s) if s.destination.is_some())
            );
            assert!(
                matches!(&resolved[&projects[1]], Resolved::Stream(s) if s.destination.is_none())
            );
            assert!(matches!(&resolved[&projects[2]], Resolved::NotConfigured));
        }
        // The TTL is zero, so each batch looks up again, but only the active stream's
        // credential is read, and only once.
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 3);
        assert_eq!(counting.credential_reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn found_and_missing_projects_are_cached_for_the_ttl_in_a_bounded_lru() {
        let counting = Arc::new(Counting::default());
        let projects = ids(&["a", "b", "c"]);
        configure(&counting, &projects[0], true).await;
        let directory = directory(&counting, Duration::from_secs(60), 2);

        directory.resolve(&projects[..2], far()).await;
        directory.resolve(&projects[..2], far()).await;
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 1);
        // "c" pushes "a" out of a cache of two.
        directory.resolve(&projects[2..], far()).await;
        directory.resolve(&projects[..1], far()).await;
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 3);
        directory.forget(&projects[0]);
        directory.resolve(&projects[..1], far()).await;
        assert_eq!(counting.lookups.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_cached_stream_is_assembled_once_and_shared_by_later_batches() {
        let counting = Arc::new(Counting::default());
        let project = ids(&["p"]);
        configure(&counting, &project[0], true).await;
        let directory = directory(&counting, Duration::from_secs(60), 10);
        let stream = |resolved: &HashMap<ProjectId, Resolved>| match &resolved[&project[0]] {
            Resolved::Stream(stream) => stream.clone(),
            other => panic!("expected a stream, got {other:?}"),
        };

        let first = stream(&directory.resolve(&project, far()).await);
        let second = stream(&directory.resolve(&project, far()).await);
        assert!(Arc::ptr_eq(&first, &second));
        directory.forget(&project[0]);
        let third = stream(&directory.resolve(&project, far()).await);
        assert!(!Arc::ptr_eq(&first, &third));
    }

    #[tokio::test]
    async fn a_new_credential_version_is_read_once_more() {
        let counting = Arc::new(Counting::default());
        let project = ids(&["p"]);
        let config = configure(&counting, &project[0], true).await;
        let directory = directory(&counting, Duration::ZERO, 10);
        directory.resolve(&project, far()).await;

        let credential = counting
            .store
            .put_version(
                &config.credential.secret_id,
                &Secret::new("glc_token-new-version").into(),
            )
            .await
            .unwrap();
        let mut updated = config.next_version(config.updated_at);
        updated.credential = credential;
        counting
            .store
            .update(&updated, config.version)
            .await
            .unwrap();
        let resolved = directory.resolve(&project, far()).await;
        let Resolved::Stream(stream) = &resolved[&project[0]] else {
            panic!("expected a stream")
        };
        assert_eq!(
            stream.destination.as_ref().unwrap().credential().expose(),
            "glc_token-new-version"
        );
        directory.resolve(&project, far()).await;
        assert_eq!(counting.credential_reads.load(Ordering::SeqCst), 2);
    }

    /// A store with an index of configured projects, counting what is read; its index read
    /// fails while `index_fails` is set.
    #[derive(Default)]
    struct Indexed {
        counting: Arc<Counting>,
        keys_read: AtomicUsize,
        index_reads: AtomicUsize,
        index_fails: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl StreamLookup for Indexed {
        async fn get_many(&self, projects: &[ProjectId], deadline: Instant) -> Found {
            self.keys_read.fetch_add(projects.len(), Ordering::SeqCst);
            self.counting.store.get_many(projects, deadline).await
        }

        async fn configured(
            &self,
            deadline: Instant,
        ) -> Result<Option<HashSet<ProjectId>>, StoreError> {
            self.index_reads.fetch_add(1, Ordering::SeqCst);
            if self.index_fails.load(Ordering::SeqCst) {
                return Err(StoreError::unavailable("index", "throttled"));
            }
            self.counting.store.configured(deadline).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn with_an_index_only_configured_projects_are_read_and_the_index_once_per_ttl() {
        let ttl = Duration::from_secs(30);
        let indexed = Arc::new(Indexed::default());
        let projects: Vec<ProjectId> = (0..10)
            .map(|i| ProjectId::parse(&format!("p-{i}")).unwrap())
            .collect();
        for project in &projects[..3] {
            configure(&indexed.counting, project, true).await;
        }
        let clock = Arc::new(crate::clock::PausedClock::starting_at(
            datetime!(2026-11-24 10:00 UTC),
        ));
        let directory = StreamDirectory::new(
            indexed.clone(),
            indexed.counting.clone(),
            clock.clone(),
            ttl,
            NonZeroUsize::new(100).unwrap(),
        );
        let read = |keys, index| {
            let counts = (
                indexed.keys_read.load(Ordering::SeqCst),
                indexed.index_reads.load(Ordering::SeqCst),
            );
            assert_eq!(counts, (keys, index), "(keys read, index reads)");
        };

        let resolved = directory.resolve(&projects, far()).await;
        let configured = |r: &HashMap<ProjectId, Resolved>| {
            projects
                .iter()
                .filter(|p| matches!(r[*p], Resolved::Stream(_)))
                .count()
        };
        assert_eq!(configured(&resolved), 3);
        read(3, 1);

        // A project configured now is not seen until the index is read again, a TTL later
        // (the config API dates an enable one TTL ahead for this).
        configure(&indexed.counting, &projects[3], true).await;
        tokio::time::advance(ttl / 2).await;
        assert_eq!(configured(&directory.resolve(&projects, far()).await), 3);
        read(3, 1);
        tokio::time::advance(ttl).await;
        assert_eq!(configured(&directory.resolve(&projects, far()).await), 4);
        read(7, 2);

        // An index that cannot be read: every project is looked up, and the index is not
        // tried again before a TTL has passed.
        indexed.index_fails.store(true, Ordering::SeqCst);
        tokio::time::advance(ttl).await;
        assert_eq!(configured(&directory.resolve(&projects, far()).await), 4);
        read(17, 3);
        directory.forget(&projects[9]);
        directory.resolve(&projects, far()).await;
        read(18, 3);
    }
}

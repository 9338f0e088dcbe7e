//! The index of configured projects: which projects have a stream, so that the streamer reads
//! the items of those projects only, and never asks about a project that has none. In the cost
//! model nine projects in ten have no stream; without the index, each of them seen by a
//! container cost a read per cache TTL, most of the table's read bill, growing with every
//! project that emits events.
//!
//! The index lives in the stream table, beside the streams, in items whose keys no project id
//! can take (a project id never holds `#`):
//! - [`SHARDS`] shard items, `#index/00` to `#index/15`, each a string set (`projects`) of the
//!   ids of the projects whose id hashes to it ([`shard_of`], FNV-1a: stable across builds, so
//!   the config API and the streamer agree whatever their versions);
//! - one head item, `#index`, written once every stream is in the shards ([`build`]): without
//!   it the index is not trusted and the streamer reads every project's item, as before.
//!
//! The config API keeps the shards exact: a stream's item and its project's entry are created
//! and deleted together, in one transaction (`TransactWriteItems`), so no interleaving of
//! creates and deletes can leave a configured project out. The streamer reads the head and
//! every shard in one BatchGetItem per cache TTL: 17 keys, about 0.5 read units each while
//! they are small (an item is billed per 4 KB: 100,000 projects of 20-byte ids make shards of
//! about 125 KB, 16 units each). A shard holds at most 400 KB of ids (DynamoDB's item limit):
//! about 16 × 400 KB ÷ the ids' length, some 300,000 projects of 20-byte ids.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::item::{Item, attr, s};
use crate::domain::ProjectId;
use crate::store::{StoreError, StoreResult};

/// Shard items; fixed, since a project's shard must not move.
pub const SHARDS: u64 = 16;
/// The head item's key: present once the index holds every stream.
pub const HEAD: &str = "#index";
/// The attribute of a shard item holding its projects' ids.
pub const PROJECTS: &str = "projects";
/// The head's attribute saying when the index was built.
pub const BUILT_AT: &str = "built_at";

/// The key of the shard item of `project`.
pub fn shard_key(project: &ProjectId) -> String {
    shard_name(shard_of(project.as_str()))
}

fn shard_name(shard: u64) -> String {
    format!("{HEAD}/{shard:02}")
}

fn shard_of(id: &str) -> u64 {
    fnv1a(id.as_bytes()) % SHARDS
}

/// FNV-1a, 64 bits: fixed by its definition, unlike std's hasher, which may change between
/// Rust releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

fn key(name: &str) -> Item {
    HashMap::from([(attr::PROJECT_ID.to_owned(), s(name))])
}

/// The key of a shard or the head: an item of the index, not of a stream.
pub fn index_key(project: &ProjectId) -> Item {
    key(&shard_key(project))
}

/// The keys of the head and every shard: what one read of the index asks for.
pub fn keys() -> Vec<Item> {
    let mut keys: Vec<Item> = (0..SHARDS).map(|shard| key(&shard_name(shard))).collect();
    keys.push(key(HEAD));
    keys
}

/// The configured projects in the index's `items` (those [`keys`] found), or `None` when the
/// index is not built (no head).
pub fn projects_in(items: &[Item]) -> StoreResult<Option<HashSet<ProjectId>>> {
    let name = |item: &Item| {
        item.get(attr::PROJECT_ID)
            .and_then(|v| v.as_s().ok())
            .cloned()
    };
    if !items.iter().any(|item| name(item).as_deref() == Some(HEAD)) {
        return Ok(None);
    }
    let mut projects = HashSet::new();
    for item in items {
        match item.get(PROJECTS) {
            Some(AttributeValue::Ss(ids)) => {
                for id in ids {
                    let project = ProjectId::parse(id).map_err(|_| {
                        StoreError::Corrupt(format!(
                            "a project id in index item {}",
                            name(item).unwrap_or_default()
                        ))
                    })?;
                    projects.insert(project);
                }
            }
            None => {}
            Some(_) => {
                return Err(StoreError::Corrupt(format!(
                    "attribute {PROJECTS} of index item {}",
                    name(item).unwrap_or_default()
                )));
            }
        }
    }
    Ok(Some(projects))
}

/// What [`build`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Built {
    /// Streams found in the table, each now in its shard.
    pub streams: usize,
}

/// Puts `projects` (every stream of the table) into their shards, then writes the head: from
/// then on the streamer trusts the index. Idempotent; safe while the config API runs (it keeps
/// the shards itself; a stream deleted since the scan may stay listed, which costs a read and
/// nothing else). Run after deploying a config API that keeps the index (`make migrate` does).
pub async fn build(
    client: &Client,
    table: &str,
    projects: &[ProjectId],
    now: time::OffsetDateTime,
) -> StoreResult<Built> {
    let mut shards: HashMap<String, Vec<String>> = HashMap::new();
    for project in projects {
        shards
            .entry(shard_key(project))
            .or_default()
            .push(project.to_string());
    }
    let built = Built {
        streams: projects.len(),
    };
    for (shard, ids) in shards {
        client
            .update_item()
            .table_name(table)
            .set_key(Some(key(&shard)))
            .update_expression("ADD #projects :ids")
            .expression_attribute_names("#projects", PROJECTS)
            .expression_attribute_values(":ids", AttributeValue::Ss(ids))
            .send()
            .await
            .map_err(|e| StoreError::unavailable("DynamoDB UpdateItem (index)", e))?;
    }
    let at = now
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a time formats as RFC 3339");
    client
        .put_item()
        .table_name(table)
        .item(attr::PROJECT_ID, s(HEAD))
        .item(BUILT_AT, s(&at))
        .send()
        .await
        .map_err(|e| StoreError::unavailable("DynamoDB PutItem (index)", e))?;
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_project_hashes_to_the_same_shard_in_every_build() {
        // FNV-1a's published test vectors: the empty string, "a" and "foobar".
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(shard_of("a"), 0xaf63_dc4c_8601_ec8c % SHARDS);
        let project = ProjectId::parse("project-live-1234").unwrap();
        assert_eq!(
            shard_key(&project),
            format!("#index/{:02}", shard_of("project-live-1234"))
        );
        // Spread: 1,000 ids fill every shard.
        let used: HashSet<u64> = (0..1000)
            .map(|i| shard_of(&format!("project-{i}")))
            .collect();
        assert_eq!(used.len() as u64, SHARDS);
    }

    #[test]
    fn no_project_id_can_be_an_index_key() {
        assert!(ProjectId::parse(HEAD).is_err());
        assert!(ProjectId::parse(&shard_name(3)).is_err());
    }
}

//! A connection's portals (Bind's bound statements).
//!
//! Drivers bind almost every execution to the unnamed portal, which lives
//! until the next Bind to it, the next simple Query, or the end of the
//! transaction (Sync outside a transaction block). So the unnamed portal
//! has its own slot instead of an entry in the map of named ones: no
//! hashing, no map cleared at every Sync. Its parameter list is reused:
//! when the portal goes and nothing else holds its `Arc` (a statement run
//! on a blocking thread holds one until it returns), the emptied list is
//! kept for the next Bind, so that an execution allocates no parameter
//! list of its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::BytesMut;
use qube_sql::Value;

use crate::conn::Names;

/// A bound statement (Bind) of statement type `S`.
pub struct Portal<S> {
    pub stmt: Arc<S>,
    pub params: Arc<Vec<Value>>,
    pub formats: Vec<i16>,
    /// Rows left over from an Execute with a row limit, and the tag.
    pub pending: Option<(VecDeque<BytesMut>, String)>,
    /// The tag, once the portal has run to completion.
    pub done: Option<String>,
}

pub struct Portals<S> {
    unnamed: Option<Portal<S>>,
    named: HashMap<String, Portal<S>, Names>,
    /// The last unnamed portal's parameter list, emptied, for the next.
    spare: Option<Arc<Vec<Value>>>,
}

impl<S> Default for Portals<S> {
    fn default() -> Self {
        Portals { unnamed: None, named: HashMap::default(), spare: None }
    }
}

impl<S> Portals<S> {
    pub fn get(&self, name: &str) -> Option<&Portal<S>> {
        if name.is_empty() { self.unnamed.as_ref() } else { self.named.get(name) }
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut Portal<S>> {
        if name.is_empty() { self.unnamed.as_mut() } else { self.named.get_mut(name) }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// An empty parameter list with room for `n` values: the spare one if
    /// there is one.
    pub fn params(&mut self, n: usize) -> Arc<Vec<Value>> {
        match self.spare.take() {
            Some(mut p) => {
                if let Some(v) = Arc::get_mut(&mut p) {
                    v.reserve(n);
                }
                p
            }
            None => Arc::new(Vec::with_capacity(n)),
        }
    }

    /// Binds `name`, replacing the portal of that name.
    pub fn insert(&mut self, name: &str, portal: Portal<S>) {
        if name.is_empty() {
            let old = self.unnamed.replace(portal);
            self.recycle(old);
        } else {
            self.named.insert(name.to_owned(), portal);
        }
    }

    pub fn remove(&mut self, name: &str) {
        if name.is_empty() {
            let old = self.unnamed.take();
            self.recycle(old);
        } else {
            self.named.remove(name);
        }
    }

    /// Closes every portal (the end of a transaction).
    pub fn clear(&mut self) {
        let old = self.unnamed.take();
        self.recycle(old);
        if !self.named.is_empty() {
            self.named.clear();
        }
    }

    /// Keeps a gone unnamed portal's parameter list, emptied, if nothing
    /// else holds it.
    fn recycle(&mut self, old: Option<Portal<S>>) {
        if let Some(Portal { mut params, .. }) = old
            && let Some(v) = Arc::get_mut(&mut params)
        {
            v.clear();
            self.spare = Some(params);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn portal(stmt: &Arc<()>, params: Arc<Vec<Value>>) -> Portal<()> {
        Portal { stmt: stmt.clone(), params, formats: Vec::new(), pending: None, done: None }
    }

    #[test]
    fn the_unnamed_portal_is_its_own_slot_and_its_list_is_reused() {
        let stmt = Arc::new(());
        let mut ps = Portals::default();
        let mut p = ps.params(2);
        Arc::get_mut(&mut p).unwrap().extend([Value::Int4(1), Value::Int4(2)]);
        let at = Arc::as_ptr(&p);
        ps.insert("", portal(&stmt, p));
        ps.insert("c1", portal(&stmt, Arc::new(vec![Value::Int4(3)])));
        assert!(ps.contains("") && ps.contains("c1") && !ps.contains("c2"));
        assert_eq!(ps.get("").unwrap().params.len(), 2);
        assert_eq!(*ps.get("c1").unwrap().params, vec![Value::Int4(3)]);

        // Gone at the end of the transaction: its list comes back empty.
        ps.clear();
        assert!(!ps.contains("") && !ps.contains("c1"));
        let p = ps.params(1);
        assert_eq!(Arc::as_ptr(&p), at);
        assert!(p.is_empty());

        // A list still held elsewhere (a statement on a blocking thread)
        // is not reused.
        let held = p.clone();
        ps.insert("", portal(&stmt, p));
        ps.remove("");
        assert!(!ps.contains(""));
        let fresh = ps.params(1);
        assert_ne!(Arc::as_ptr(&fresh), Arc::as_ptr(&held));

        // Named portals stay until removed or cleared.
        ps.insert("c2", portal(&stmt, fresh));
        ps.remove("");
        assert!(ps.contains("c2"));
        ps.remove("c2");
        assert!(!ps.contains("c2"));
    }
}

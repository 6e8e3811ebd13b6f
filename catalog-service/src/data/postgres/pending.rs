//! The changes the database announced that Catalog has not read yet: ids per table, coalesced
//! (an id announced ten times is read once) and bounded. Past `max_ids` ids waiting, or on a
//! `<table>:*` announcement, the ids are dropped and the whole catalog is read again instead:
//! a flood of announcements, forged or real, costs at most one full read at a time, never
//! unbounded memory.

use std::collections::BTreeSet;

use crate::database::changes::{Change as Announced, Table};

/// What to read next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Everything: products and customers.
    All,
    /// These rows of this table.
    Rows(Table, Vec<i32>),
}

/// Announced changes not read yet.
#[derive(Debug)]
pub struct Pending {
    products: BTreeSet<i32>,
    customers: BTreeSet<i32>,
    all: bool,
    max_ids: usize,
}

impl Pending {
    /// Nothing pending; at most `max_ids` ids kept before falling back to a full read.
    pub fn new(max_ids: usize) -> Self {
        Self {
            products: BTreeSet::new(),
            customers: BTreeSet::new(),
            all: false,
            max_ids: max_ids.max(1),
        }
    }

    /// Notes an announcement.
    pub fn add(&mut self, announced: Announced) {
        if self.all {
            return;
        }
        match announced {
            Announced::All(_) => self.read_everything(),
            Announced::Rows { table, ids } => {
                let set = match table {
                    Table::Products => &mut self.products,
                    Table::Customers => &mut self.customers,
                };
                set.extend(ids);
                if self.products.len() + self.customers.len() > self.max_ids {
                    self.read_everything();
                }
            }
        }
    }

    /// Everything is to be read again (after a reconnect, say); the ids waiting are covered.
    pub fn read_everything(&mut self) {
        self.all = true;
        self.products.clear();
        self.customers.clear();
    }

    /// Takes the next work: a full read if one is due, else up to `batch` ids of one table.
    pub fn take(&mut self, batch: usize) -> Option<Work> {
        if std::mem::take(&mut self.all) {
            return Some(Work::All);
        }
        for (table, set) in [
            (Table::Products, &mut self.products),
            (Table::Customers, &mut self.customers),
        ] {
            if set.is_empty() {
                continue;
            }
            let ids: Vec<i32> = if set.len() <= batch {
                std::mem::take(set).into_iter().collect()
            } else {
                let ids: Vec<i32> = set.iter().take(batch).copied().collect();
                for id in &ids {
                    set.remove(id);
                }
                ids
            };
            return Some(Work::Rows(table, ids));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(table: Table, ids: &[i32]) -> Announced {
        Announced::Rows {
            table,
            ids: ids.to_vec(),
        }
    }

    #[test]
    fn ids_are_coalesced_and_taken_in_batches_per_table() {
        let mut pending = Pending::new(100);
        pending.add(rows(Table::Products, &[3, 1, 2]));
        pending.add(rows(Table::Products, &[2, 3]));
        pending.add(rows(Table::Customers, &[9]));
        assert_eq!(
            pending.take(2),
            Some(Work::Rows(Table::Products, vec![1, 2]))
        );
        assert_eq!(pending.take(2), Some(Work::Rows(Table::Products, vec![3])));
        assert_eq!(pending.take(2), Some(Work::Rows(Table::Customers, vec![9])));
        assert_eq!(pending.take(2), None);
    }

    #[test]
    fn too_many_ids_or_a_whole_table_become_one_full_read() {
        let mut pending = Pending::new(3);
        pending.add(rows(Table::Products, &[1, 2]));
        pending.add(rows(Table::Customers, &[1, 2]));
        assert_eq!(pending.take(10), Some(Work::All));
        assert_eq!(pending.take(10), None);
        pending.add(rows(Table::Products, &[1]));
        pending.add(Announced::All(Table::Customers));
        // Covered by the full read: not read again after it.
        pending.add(rows(Table::Products, &[5]));
        assert_eq!(pending.take(10), Some(Work::All));
        assert_eq!(pending.take(10), None);
    }
}

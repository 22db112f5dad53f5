//! Where nodes are: the label names that place a physical node in a zone and
//! a rack, the ids the pure code interns them to, and the distance between
//! two places. One home for this knowledge: affinity (data locality), the
//! cost function (transfer bandwidth), the reconfiguration planner (spread
//! domains) and every display read it from here.

use std::collections::{BTreeMap, HashMap};

/// The label naming a physical node's zone.
pub const ZONE_LABEL: &str = "zone";
/// The label naming a physical node's rack (a rack is within its zone:
/// `r1` in `z1` and `r1` in `z2` are different racks).
pub const RACK_LABEL: &str = "rack";

/// A node's labels, as the domain keeps them or as the wire carries them.
pub trait Labels {
    /// The value of label `key`.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A node's zone label, if it has one.
pub fn zone_of(labels: &impl Labels) -> Option<&str> {
    labels.label(ZONE_LABEL)
}

/// A node's rack label, if it has one.
pub fn rack_of(labels: &impl Labels) -> Option<&str> {
    labels.label(RACK_LABEL)
}

/// How far apart two places are; drives both locality and transfer cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Distance {
    /// The same physical node.
    SameNode,
    /// Different nodes in one rack.
    SameRack,
    /// Different racks in one zone.
    SameZone,
    /// Different zones, or unknown.
    Remote,
}

impl Distance {
    /// Locality value in [0, 1] of reading data at this distance.
    pub fn proximity(self) -> f64 {
        match self {
            Distance::SameNode => 1.0,
            Distance::SameRack => 0.75,
            Distance::SameZone => 0.5,
            Distance::Remote => 0.0,
        }
    }

    /// Lower-case name for humans.
    pub fn name(self) -> &'static str {
        match self {
            Distance::SameNode => "same node",
            Distance::SameRack => "same rack",
            Distance::SameZone => "same zone",
            Distance::Remote => "remote",
        }
    }
}

/// A zone and a rack as interned ids (see [`Places`]); either may be unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Place {
    /// Zone id.
    pub zone: Option<u32>,
    /// Rack id, unique across zones.
    pub rack: Option<u32>,
}

impl Place {
    /// Distance between two *different* nodes at these places (a node and
    /// itself are [`Distance::SameNode`], which the caller knows by id).
    pub fn distance_to(self, other: Place) -> Distance {
        if self.rack.is_some() && self.rack == other.rack {
            Distance::SameRack
        } else if self.zone.is_some() && self.zone == other.zone {
            Distance::SameZone
        } else {
            Distance::Remote
        }
    }
}

/// Interns zone and rack names to small ids, in order of first sight, so
/// the hot loops compare integers.
#[derive(Debug, Clone, Default)]
pub struct Places {
    zones: Vec<String>,
    zone_ids: HashMap<String, u32>,
    rack_ids: HashMap<(Option<u32>, String), u32>,
}

impl Places {
    /// The place of a node with these labels, interning new names.
    pub fn intern(&mut self, labels: &BTreeMap<String, String>) -> Place {
        self.intern_names(zone_of(labels), rack_of(labels))
    }

    /// The place named by a zone and an optional rack in it, interning new names.
    pub fn intern_names(&mut self, zone: Option<&str>, rack: Option<&str>) -> Place {
        let zone = zone.map(|z| match self.zone_ids.get(z) {
            Some(&id) => id,
            None => {
                let id = self.zones.len() as u32;
                self.zones.push(z.to_owned());
                self.zone_ids.insert(z.to_owned(), id);
                id
            }
        });
        let rack = rack.map(|r| {
            let n = self.rack_ids.len() as u32;
            *self.rack_ids.entry((zone, r.to_owned())).or_insert(n)
        });
        Place { zone, rack }
    }

    /// The place a known zone and rack name (`zone` or `zone/rack`), without
    /// interning: an unknown name is unknown (no node is there).
    pub fn lookup(&self, zone: &str, rack: Option<&str>) -> Place {
        let zone = self.zone_ids.get(zone).copied();
        let rack = rack.and_then(|r| self.rack_ids.get(&(zone, r.to_owned())).copied());
        Place { zone, rack }
    }

    /// Zone names by id.
    pub fn zones(&self) -> &[String] {
        &self.zones
    }

    /// Gives up the zone names, by id.
    pub fn into_zones(self) -> Vec<String> {
        self.zones
    }
}

/// Distance between two physical nodes given their ids and labels.
pub fn between((a_id, a): (&str, &BTreeMap<String, String>), (b_id, b): (&str, &BTreeMap<String, String>)) -> Distance {
    if a_id == b_id {
        return Distance::SameNode;
    }
    let mut places = Places::default();
    places.intern(a).distance_to(places.intern(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(z: Option<&str>, r: Option<&str>) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        if let Some(z) = z {
            m.insert(ZONE_LABEL.to_owned(), z.to_owned());
        }
        if let Some(r) = r {
            m.insert(RACK_LABEL.to_owned(), r.to_owned());
        }
        m
    }

    #[test]
    fn racks_are_within_zones() {
        let d = |a: (Option<&str>, Option<&str>), b: (Option<&str>, Option<&str>)| {
            between(("a", &labels(a.0, a.1)), ("b", &labels(b.0, b.1)))
        };
        assert_eq!(d((Some("z1"), Some("r1")), (Some("z1"), Some("r1"))), Distance::SameRack);
        assert_eq!(d((Some("z1"), Some("r1")), (Some("z1"), Some("r2"))), Distance::SameZone);
        assert_eq!(d((Some("z1"), Some("r1")), (Some("z2"), Some("r1"))), Distance::Remote);
        assert_eq!(d((None, None), (None, None)), Distance::Remote, "unknown is remote");
        assert_eq!(d((None, Some("r1")), (None, Some("r1"))), Distance::SameRack, "a rack without a zone");
        let same = between(("a", &labels(None, None)), ("a", &labels(None, None)));
        assert_eq!(same, Distance::SameNode);
        let mut p = Places::default();
        let a = p.intern(&labels(Some("z1"), Some("r1")));
        assert_eq!(p.lookup("z1", Some("r1")), a);
        assert_eq!(p.lookup("z9", None), Place::default());
        assert_eq!(p.zones(), ["z1".to_owned()]);
    }
}

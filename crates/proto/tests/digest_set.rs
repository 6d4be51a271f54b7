//! The set digest's element count, which beats carry beside the lanes.

use regmesh_proto::digest::{element, SetDigest};

#[test]
fn a_digest_counts_its_elements() {
    let mut d = SetDigest::default();
    assert_eq!(d.count(), 0);
    d.add(&element("agent", "a", "c1", 1, 0, false));
    d.add(&element("agent", "b", "c1", 2, 0, false));
    assert_eq!(d.count(), 2);
    d.remove(&element("agent", "a", "c1", 1, 0, false));
    assert_eq!(d.count(), 1);
}

//! The hand-written messages against prost's derived ones for the same fields: the same bytes
//! both ways, for any values, packed or not, with unknown fields skipped, a message sent in two
//! pieces merged as protobuf merges it, broken input refused; a decoded list sized once; and
//! `clear`.

use proptest::prelude::*;
use prost::Message;

use super::{Discounts, PriceGroup};

/// `PriceGroup` as prost derives it from `ecommerce.proto`.
#[derive(Clone, PartialEq, Message)]
struct DerivedPriceGroup {
    #[prost(int32, tag = "1")]
    customer_id: i32,
    #[prost(sfixed32, repeated, tag = "2")]
    product_ids: Vec<i32>,
    #[prost(sfixed32, repeated, tag = "3")]
    prices_in_cents: Vec<i32>,
}

/// `Discounts` as prost derives it.
#[derive(Clone, PartialEq, Message)]
struct DerivedDiscounts {
    #[prost(float, repeated, tag = "1")]
    pct: Vec<f32>,
    #[prost(sfixed32, repeated, tag = "2")]
    value_in_cents: Vec<i32>,
}

/// The same lists sent unpacked (as a proto2 sender may), which every proto3 reader accepts.
#[derive(Clone, PartialEq, Message)]
struct UnpackedDiscounts {
    #[prost(float, repeated, packed = "false", tag = "1")]
    pct: Vec<f32>,
    #[prost(sfixed32, repeated, packed = "false", tag = "2")]
    value_in_cents: Vec<i32>,
    /// A field this side does not know.
    #[prost(string, tag = "9")]
    note: String,
}

/// `PriceGroup`'s lists sent unpacked, with a field this side does not know.
#[derive(Clone, PartialEq, Message)]
struct UnpackedPriceGroup {
    #[prost(int32, tag = "1")]
    customer_id: i32,
    #[prost(sfixed32, repeated, packed = "false", tag = "2")]
    product_ids: Vec<i32>,
    #[prost(sfixed32, repeated, packed = "false", tag = "3")]
    prices_in_cents: Vec<i32>,
    #[prost(string, tag = "9")]
    note: String,
}

proptest! {
    #[test]
    fn a_price_group_decodes_unpacked_and_in_two_pieces_as_protobuf_merges_them(
        first in proptest::collection::vec(any::<(i32, i32)>(), 0..50),
        second in proptest::collection::vec(any::<(i32, i32)>(), 0..50),
        customer_id in any::<i32>(),
    ) {
        let group = |products: &[(i32, i32)], customer_id| {
            let (product_ids, prices_in_cents) = products.iter().copied().unzip();
            PriceGroup { customer_id, product_ids, prices_in_cents }
        };
        let (a, b) = (group(&first, 0), group(&second, customer_id));
        let unpacked = UnpackedPriceGroup {
            customer_id,
            product_ids: b.product_ids.clone(),
            prices_in_cents: b.prices_in_cents.clone(),
            note: "from a newer sender".into(),
        };
        prop_assert_eq!(PriceGroup::decode(&unpacked.encode_to_vec()[..]).unwrap(), b.clone());
        // Two encodings one after the other are one message: the lists joined, the last
        // customer id set.
        let joined = [a.encode_to_vec(), unpacked.encode_to_vec()].concat();
        let all: Vec<(i32, i32)> = first.iter().chain(&second).copied().collect();
        prop_assert_eq!(PriceGroup::decode(&joined[..]).unwrap(), group(&all, customer_id));
    }

    #[test]
    fn discounts_in_two_pieces_are_one_list(
        first in proptest::collection::vec(any::<i32>(), 0..50),
        second in proptest::collection::vec(any::<i32>(), 0..50),
    ) {
        let discounts = |values: &[i32]| Discounts {
            pct: values.iter().map(|&v| v as f32).collect(),
            value_in_cents: values.to_vec(),
        };
        let joined = [discounts(&first).encode_to_vec(), discounts(&second).encode_to_vec()];
        let all: Vec<i32> = first.iter().chain(&second).copied().collect();
        prop_assert_eq!(Discounts::decode(&joined.concat()[..]).unwrap(), discounts(&all));
    }

    #[test]
    fn a_price_group_is_the_bytes_prost_derives_both_ways(
        customer_id in any::<i32>(),
        products in proptest::collection::vec(any::<(i32, i32)>(), 0..300),
    ) {
        let (product_ids, prices_in_cents) = products.into_iter().unzip();
        let ours = PriceGroup { customer_id, product_ids, prices_in_cents };
        let derived = DerivedPriceGroup {
            customer_id,
            product_ids: ours.product_ids.clone(),
            prices_in_cents: ours.prices_in_cents.clone(),
        };
        let bytes = derived.encode_to_vec();
        prop_assert_eq!(ours.encode_to_vec(), bytes.clone());
        prop_assert_eq!(ours.encoded_len(), bytes.len());
        prop_assert_eq!(PriceGroup::decode(&bytes[..]).unwrap(), ours);
    }

    #[test]
    fn discounts_are_the_bytes_prost_derives_both_ways_and_unpacked_ones_decode(
        values in proptest::collection::vec(any::<(f32, i32)>(), 0..300),
    ) {
        let (pct, value_in_cents): (Vec<f32>, Vec<i32>) = values.into_iter().unzip();
        let ours = Discounts { pct: pct.clone(), value_in_cents: value_in_cents.clone() };
        let derived = DerivedDiscounts { pct: pct.clone(), value_in_cents: value_in_cents.clone() };
        let bytes = derived.encode_to_vec();
        prop_assert_eq!(ours.encode_to_vec(), bytes.clone());
        prop_assert_eq!(ours.encoded_len(), bytes.len());
        // NaN is not equal to itself: compare bits.
        let bits = |d: &Discounts| d.pct.iter().map(|p| p.to_bits()).collect::<Vec<_>>();
        let decoded = Discounts::decode(&bytes[..]).unwrap();
        prop_assert_eq!(bits(&decoded), bits(&ours));
        prop_assert_eq!(&decoded.value_in_cents, &value_in_cents);
        let note = "from a newer sender".to_owned();
        let unpacked = UnpackedDiscounts { pct, value_in_cents, note }.encode_to_vec();
        let decoded = Discounts::decode(&unpacked[..]).unwrap();
        prop_assert_eq!(bits(&decoded), bits(&ours));
        prop_assert_eq!(decoded.value_in_cents, ours.value_in_cents);
    }
}

#[test]
fn a_decoded_list_is_sized_once_from_its_packed_length() {
    let group = DerivedPriceGroup {
        customer_id: 1,
        product_ids: (1..=100).collect(),
        prices_in_cents: (1..=100).map(|i| i * 100).collect(),
    };
    let decoded = PriceGroup::decode(&group.encode_to_vec()[..]).unwrap();
    // Grown one push at a time, the capacity would be 128.
    let capacities = (
        decoded.product_ids.capacity(),
        decoded.prices_in_cents.capacity(),
    );
    assert_eq!(capacities, (100, 100));
    let discounts = DerivedDiscounts {
        pct: vec![0.1; 100],
        value_in_cents: (1..=100).collect(),
    };
    let decoded = Discounts::decode(&discounts.encode_to_vec()[..]).unwrap();
    assert_eq!(
        (decoded.pct.capacity(), decoded.value_in_cents.capacity()),
        (100, 100)
    );
}

#[test]
fn a_packed_length_that_lies_is_refused_without_allocating_what_it_claims() {
    // Field 2, packed, claiming 2^31 bytes of values, followed by two values.
    let mut bytes = vec![0x12, 0x80, 0x80, 0x80, 0x80, 0x08];
    bytes.extend([1, 0, 0, 0, 2, 0, 0, 0]);
    let mut group = PriceGroup::default();
    let error = group.merge(&bytes[..]).unwrap_err();
    assert!(
        error.to_string().contains("PriceGroup.product_ids"),
        "{error}"
    );
    // Room for at most what the message could hold (a Vec of 4-byte values starts at 4), not
    // for the 2^29 values claimed.
    assert!(
        group.product_ids.capacity() <= 4,
        "{}",
        group.product_ids.capacity()
    );
    // Not a whole number of values: refused as prost refuses it.
    let ragged = [0x0a, 0x03, 0, 0, 0];
    let error = Discounts::decode(&ragged[..]).unwrap_err();
    let derived = DerivedDiscounts::decode(&ragged[..]).unwrap_err();
    assert!(error.to_string().contains("Discounts.pct"), "{error}");
    assert!(
        derived.to_string().contains("DerivedDiscounts.pct"),
        "{derived}"
    );
}

#[test]
fn clear_empties_every_field_and_keeps_the_lists_room() {
    let mut group = PriceGroup {
        customer_id: 1,
        product_ids: vec![1, 2, 3],
        prices_in_cents: vec![100, 200, 300],
    };
    group.clear();
    assert_eq!(group, PriceGroup::default());
    assert!(group.product_ids.capacity() >= 3 && group.prices_in_cents.capacity() >= 3);
    let mut discounts = Discounts {
        pct: vec![0.1],
        value_in_cents: vec![90],
    };
    discounts.clear();
    assert_eq!(discounts, Discounts::default());
}

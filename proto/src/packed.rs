//! The two messages that carry a list per product, `PriceGroup` (Catalog to Discount) and
//! `Discounts` (back), with `prost::Message` written out so that decoding a packed list makes
//! room for all of it first.
//!
//! Why by hand: prost's generated decoding pushes a packed repeated field's values one at a
//! time without reserving from the length it has just read, so a group of 100 products grew
//! each of its lists through an allocation and five reallocations, on both sides of every RPC:
//! the largest cost per product in the profile after the rule itself. `build.rs` points the generated code at
//! these types (`extern_path`); everything else about them is prost's own: its functions encode
//! and decode every field (decoding, and its errors, after the reservation), so the bytes on
//! the wire are the same, as the tests check against prost's derived messages.

use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, float, int32, sfixed32, skip_field};
use prost::{DecodeError, Message};

/// One HTTP request's products, as `ApplyDiscountPrices` takes them: the customer, and each
/// product's id and price, in the same order.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct PriceGroup {
    /// Field 1.
    pub customer_id: i32,
    /// Field 2, packed `sfixed32`.
    pub product_ids: Vec<i32>,
    /// Field 3, packed `sfixed32`.
    pub prices_in_cents: Vec<i32>,
}

/// The discounts of a group's products, in the order sent (see `ecommerce.proto`): both lists
/// empty, or one entry per product each.
#[derive(Clone, PartialEq, Default, Debug)]
pub struct Discounts {
    /// Field 1, packed `float`.
    pub pct: Vec<f32>,
    /// Field 2, packed `sfixed32`.
    pub value_in_cents: Vec<i32>,
}

/// prost's `merge_repeated` for a list of fixed-size values (as many bytes each on the wire as
/// in memory, as `float` and `sfixed32` are), after making room in `values` for the packed list
/// that `buf` starts with: its length is read from a copy of the first chunk, so nothing is
/// consumed, and room is made only when that many bytes follow, so a length that lies
/// allocates nothing. Decoding, and reporting anything wrong with the field, is prost's.
fn merge_packed<T, B: Buf>(
    merge: fn(WireType, &mut Vec<T>, &mut B, DecodeContext) -> Result<(), DecodeError>,
    wire_type: WireType,
    values: &mut Vec<T>,
    buf: &mut B,
    ctx: DecodeContext,
) -> Result<(), DecodeError> {
    if wire_type == WireType::LengthDelimited {
        let mut peek = buf.chunk();
        if let Ok(len) = prost::encoding::decode_varint(&mut peek) {
            let after_len = buf.remaining() - (buf.chunk().len() - peek.len());
            if len <= after_len as u64 {
                values.reserve(len as usize / size_of::<T>());
            }
        }
    }
    merge(wire_type, values, buf, ctx)
}

/// `merged`, its error naming `message.field` as prost's derived code names it.
fn in_field(
    merged: Result<(), DecodeError>,
    message: &'static str,
    field: &'static str,
) -> Result<(), DecodeError> {
    merged.map_err(|mut error| {
        error.push(message, field);
        error
    })
}

impl Message for PriceGroup {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.customer_id != 0 {
            int32::encode(1, &self.customer_id, buf);
        }
        sfixed32::encode_packed(2, &self.product_ids, buf);
        sfixed32::encode_packed(3, &self.prices_in_cents, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (field, merged) = match tag {
            1 => {
                let merged = int32::merge(wire_type, &mut self.customer_id, buf, ctx);
                ("customer_id", merged)
            }
            2 => {
                let ids = &mut self.product_ids;
                let merged = merge_packed(sfixed32::merge_repeated, wire_type, ids, buf, ctx);
                ("product_ids", merged)
            }
            3 => {
                let prices = &mut self.prices_in_cents;
                let merged = merge_packed(sfixed32::merge_repeated, wire_type, prices, buf, ctx);
                ("prices_in_cents", merged)
            }
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        in_field(merged, "PriceGroup", field)
    }

    fn encoded_len(&self) -> usize {
        let customer = if self.customer_id != 0 {
            int32::encoded_len(1, &self.customer_id)
        } else {
            0
        };
        customer
            + sfixed32::encoded_len_packed(2, &self.product_ids)
            + sfixed32::encoded_len_packed(3, &self.prices_in_cents)
    }

    fn clear(&mut self) {
        // As prost's generated code does: the lists keep their room.
        self.customer_id = 0;
        self.product_ids.clear();
        self.prices_in_cents.clear();
    }
}

impl Message for Discounts {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        float::encode_packed(1, &self.pct, buf);
        sfixed32::encode_packed(2, &self.value_in_cents, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let (field, merged) = match tag {
            1 => {
                let merged =
                    merge_packed(float::merge_repeated, wire_type, &mut self.pct, buf, ctx);
                ("pct", merged)
            }
            2 => {
                let values = &mut self.value_in_cents;
                let merged = merge_packed(sfixed32::merge_repeated, wire_type, values, buf, ctx);
                ("value_in_cents", merged)
            }
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        in_field(merged, "Discounts", field)
    }

    fn encoded_len(&self) -> usize {
        float::encoded_len_packed(1, &self.pct)
            + sfixed32::encoded_len_packed(2, &self.value_in_cents)
    }

    fn clear(&mut self) {
        self.pct.clear();
        self.value_in_cents.clear();
    }
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;

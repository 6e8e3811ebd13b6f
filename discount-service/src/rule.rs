//! The discount rule, as pure functions over decimal arithmetic.
//!
//! Customer 1 gets 10% off every product priced above zero. The original system computed
//! `price / 100`, took 10% off, multiplied by 100 and truncated to whole cents. In exact
//! base-10 arithmetic (`rust_decimal`) the division and the multiplication by 100 cancel, so
//! that is the price in cents times 0.9, truncated: one multiplication per product, which gives
//! the same cents for every price, where binary floating point would not (0.1 and 0.9 have no
//! exact `f64`).

use rust_decimal::Decimal;

/// The customer who gets the discount.
pub const ELIGIBLE_CUSTOMER_ID: i32 = 1;

/// The discount as a fraction (10%), exactly.
pub const DISCOUNT_RATE: Decimal = Decimal::from_parts(1, 0, 0, false, 1);

/// The share of the price the customer pays: `1 - DISCOUNT_RATE` (0.9), exactly.
pub const KEPT_RATE: Decimal = Decimal::from_parts(9, 0, 0, false, 1);

/// The discount as it travels on the wire (`DiscountValue.pct` is a `float`).
pub const DISCOUNT_PCT: f32 = 0.1;

/// Why the rule cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("price_in_cents must not be negative, got {0}")]
    NegativePrice(i32),
}

/// A discount granted on one product.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Discount {
    /// The fraction taken off (0.1).
    pub pct: f32,
    /// The price after the discount, in whole cents (truncated).
    pub value_in_cents: i32,
}

/// Decides the discount for `customer_id` on a product priced `price_in_cents`.
///
/// `Ok(None)` means no discount: the customer is not eligible or the product is free.
pub fn discount_for(customer_id: i32, price_in_cents: i32) -> Result<Option<Discount>, RuleError> {
    if price_in_cents < 0 {
        return Err(RuleError::NegativePrice(price_in_cents));
    }
    if customer_id != ELIGIBLE_CUSTOMER_ID || price_in_cents == 0 {
        return Ok(None);
    }
    Ok(Some(Discount {
        pct: DISCOUNT_PCT,
        value_in_cents: discounted_cents(price_in_cents),
    }))
}

/// The price after the 10% discount, truncated to whole cents, for a non-negative price.
///
/// `price × 0.9` is exact in decimal (a scale-1 product of two exact values, no rescaling), and
/// truncating it to whole cents is the original's result, with no further arithmetic
/// (`matches_the_original_computation` checks it against the original's steps).
pub fn discounted_cents(price_in_cents: i32) -> i32 {
    let cents = (Decimal::from(price_in_cents) * KEPT_RATE).trunc();
    // Truncated, the value is its mantissa (scale 0): read as it is, not truncated again as
    // `to_i32` would. For 0 <= price <= i32::MAX it lies in 0..=price, so it always fits an
    // i32; the fallback keeps this total for negative input too.
    i32::try_from(cents.mantissa()).unwrap_or(price_in_cents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::prelude::ToPrimitive;

    #[test]
    fn spec_prices_truncate_to_the_originals_cents() {
        assert_eq!(discounted_cents(99_999), 89_999);
        assert_eq!(discounted_cents(150_000), 135_000);
        assert_eq!(discounted_cents(32_999), 29_699);
    }

    #[test]
    fn one_cent_truncates_to_zero() {
        assert_eq!(discounted_cents(1), 0);
        assert_eq!(
            discount_for(1, 1),
            Ok(Some(Discount {
                pct: 0.1,
                value_in_cents: 0
            }))
        );
    }

    #[test]
    fn zero_price_gets_no_discount() {
        assert_eq!(discount_for(ELIGIBLE_CUSTOMER_ID, 0), Ok(None));
    }

    #[test]
    fn largest_price_does_not_overflow() {
        // 2147483647 * 0.9 = 1932735282.3
        assert_eq!(discounted_cents(i32::MAX), 1_932_735_282);
    }

    #[test]
    fn other_customers_get_no_discount() {
        for customer in [0, 2, 99, -1, i32::MAX] {
            assert_eq!(discount_for(customer, 99_999), Ok(None));
        }
    }

    #[test]
    fn negative_price_is_an_error() {
        assert_eq!(discount_for(1, -1), Err(RuleError::NegativePrice(-1)));
        assert_eq!(
            discount_for(2, i32::MIN),
            Err(RuleError::NegativePrice(i32::MIN))
        );
    }

    #[test]
    fn rate_is_exactly_one_tenth_and_the_rest_is_kept() {
        assert_eq!(DISCOUNT_RATE.to_string(), "0.1");
        assert_eq!(KEPT_RATE, Decimal::ONE - DISCOUNT_RATE);
    }

    /// The original's steps, in decimal: cents to currency units, minus 10%, back to cents,
    /// truncated.
    fn original_steps(price_in_cents: i32) -> i32 {
        let price = Decimal::new(i64::from(price_in_cents), 2);
        let discounted = price - price * DISCOUNT_RATE;
        let cents = (discounted * Decimal::ONE_HUNDRED).trunc();
        cents.to_i32().expect("fits")
    }

    proptest! {
        /// An independent formula in integers: 90% of the price, rounded toward zero.
        #[test]
        fn matches_integer_formula_over_all_non_negative_prices(price in 0..=i32::MAX) {
            let expected = i64::from(price) * 9 / 10;
            prop_assert_eq!(i64::from(discounted_cents(price)), expected);
        }

        #[test]
        fn matches_the_original_computation(price in 0..=i32::MAX) {
            prop_assert_eq!(discounted_cents(price), original_steps(price));
        }

        #[test]
        fn discount_never_raises_the_price(price in 1..=i32::MAX) {
            let discount = discount_for(ELIGIBLE_CUSTOMER_ID, price).unwrap().unwrap();
            prop_assert!(discount.value_in_cents < price);
            prop_assert_eq!(discount.pct, DISCOUNT_PCT);
        }

        #[test]
        fn every_negative_price_is_refused(price in i32::MIN..0, customer in any::<i32>()) {
            prop_assert_eq!(discount_for(customer, price), Err(RuleError::NegativePrice(price)));
        }
    }
}

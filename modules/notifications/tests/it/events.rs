//! Events as the other modules append them, with fixed ids and times where snapshots need
//! them.

use chrono::{DateTime, TimeZone, Utc};
use inventory_contract::events::LowStock;
use orders_contract::events::{CancellationReason, OrderCancelled, OrderConfirmed, OrderPlaced, OrderShipped};
use orders_contract::{OrderId, OrderStatus};
use payments_contract::events::PaymentRefunded;
use platform::money::{Currency, Money};
use users_contract::events::{PasswordResetRequested, UserRegistered};
use users_contract::{ActionRequestId, UserId};
use uuid::Uuid;

pub fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 9, 30, 0).unwrap()
}

pub fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap())
}

pub fn order() -> Uuid {
    Uuid::from_u128(0x0193_b5f2_8a4e_7c3d_9a51_0000_0000_0001)
}

pub fn confirmed(user: Uuid, order: Uuid) -> OrderConfirmed {
    OrderConfirmed {
        order_id: OrderId(order),
        user_id: user,
        payment_id: Uuid::now_v7().into(),
        total: eur(2999),
        confirmed_at: at(),
    }
}

pub fn cancelled(user: Uuid, order: Uuid) -> OrderCancelled {
    OrderCancelled {
        order_id: OrderId(order),
        user_id: user,
        reason: CancellationReason::CustomerRequest,
        detail: None,
        cancelled_from: OrderStatus::Confirmed,
        cancelled_at: at(),
    }
}

pub fn shipped(user: Uuid, order: Uuid) -> OrderShipped {
    OrderShipped {
        order_id: OrderId(order),
        user_id: user,
        carrier: "DHL".to_owned(),
        tracking_number: "JD014600006281234567".to_owned(),
        shipped_at: Utc::now(),
    }
}

pub fn placed(user: Uuid, order: Uuid) -> OrderPlaced {
    OrderPlaced {
        order_id: OrderId(order),
        user_id: user,
        lines: Vec::new(),
        subtotal: eur(2500),
        shipping: eur(499),
        total: eur(2999),
        shipping_address: orders_contract::fixtures::shipping_address(),
        placed_at: at(),
    }
}

pub fn refunded(order: Uuid) -> PaymentRefunded {
    PaymentRefunded {
        payment_id: Uuid::now_v7().into(),
        order_id: order,
        refund_id: Uuid::now_v7(),
        amount: eur(1000),
        total_refunded: eur(2999),
        fully_refunded: true,
        refunded_at: Utc::now(),
    }
}

pub fn registered(user: Uuid) -> UserRegistered {
    UserRegistered { user_id: UserId(user), verification_request: ActionRequestId(Uuid::now_v7()), registered_at: at() }
}

pub fn reset_requested(user: Uuid) -> PasswordResetRequested {
    PasswordResetRequested {
        user_id: UserId(user),
        request_id: ActionRequestId(Uuid::now_v7()),
        requested_at: Utc::now(),
    }
}

pub fn low_stock() -> LowStock {
    LowStock {
        product_id: Uuid::from_u128(0xaa).into(),
        sku: "MUG-001".to_owned(),
        name: "Enamel mug".to_owned(),
        available: 3,
        threshold: 5,
        at: Utc::now(),
    }
}

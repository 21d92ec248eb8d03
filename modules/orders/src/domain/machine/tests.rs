//! The state machine alone: every path of docs/saga.md, duplicates and early arrivals.

use chrono::{TimeDelta, Utc};
use inventory_contract::ProductId;
use orders_contract::events::{CancellationReason, RefundReason, RejectedLine};
use orders_contract::{OrderId, OrderStatus};
use payments_contract::PaymentId;
use platform::money::{Currency, Money};
use uuid::Uuid;

use super::{Effect, Order, SagaInput, Stock};

fn order() -> Order {
    Order {
        id: OrderId(Uuid::now_v7()),
        user_id: Uuid::now_v7(),
        status: OrderStatus::Pending,
        total: eur(2999),
        payment_method: "pm_card_visa".to_owned(),
        stock: Stock::Awaiting,
        captures: Vec::new(),
        failure: None,
        pay_by: None,
        cancellation: None,
        shipment: None,
    }
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::parse("EUR").unwrap_or_else(|_| unreachable!()))
}

const WINDOW: TimeDelta = TimeDelta::minutes(15);

fn apply(order: &mut Order, input: SagaInput) -> Vec<Effect> {
    order.apply(input, Utc::now(), WINDOW).map(|t| t.effects).unwrap_or_else(|e| panic!("{e}"))
}

fn reserved(id: Uuid) -> SagaInput {
    SagaInput::StockReserved { reservation_id: id }
}

fn captured(id: PaymentId) -> SagaInput {
    SagaInput::PaymentCaptured { payment_id: id, amount: eur(2999) }
}

fn failed(id: PaymentId) -> SagaInput {
    SagaInput::PaymentFailed { payment_id: id, code: "card_declined".to_owned() }
}

#[test]
fn the_happy_path_ends_delivered() {
    let mut o = order();
    let (reservation, payment) = (Uuid::now_v7(), PaymentId::new());
    assert!(matches!(apply(&mut o, reserved(reservation))[..], [Effect::RequestPayment { .. }]));
    assert_eq!(o.status, OrderStatus::AwaitingPayment);
    assert_eq!(apply(&mut o, captured(payment)), vec![Effect::Confirm { payment_id: payment }]);
    let ship = SagaInput::Ship { carrier: "DHL".to_owned(), tracking_number: "JD01".to_owned() };
    assert!(matches!(apply(&mut o, ship)[..], [Effect::Ship { .. }]));
    assert_eq!(apply(&mut o, SagaInput::Deliver), vec![Effect::Deliver]);
    assert_eq!(o.status, OrderStatus::Delivered);
}

#[test]
fn rejected_stock_rejects_the_order() {
    let mut o = order();
    let lines = vec![RejectedLine {
        product_id: ProductId::new(),
        code: "insufficient_stock".to_owned(),
        requested: 3,
        available: 1,
    }];
    assert_eq!(apply(&mut o, SagaInput::StockRejected { lines: lines.clone() }), vec![Effect::Reject { lines }]);
    assert_eq!(o.status, OrderStatus::Rejected);
}

#[test]
fn a_failed_payment_a_deadline_or_an_expiry_cancels_an_order_awaiting_payment() {
    for (input, reason) in [
        (failed(PaymentId::new()), CancellationReason::PaymentFailed),
        (SagaInput::PaymentDeadlinePassed, CancellationReason::PaymentTimeout),
        (SagaInput::CancelRequested, CancellationReason::CustomerRequest),
    ] {
        let mut o = order();
        apply(&mut o, reserved(Uuid::now_v7()));
        o.pay_by = Some(Utc::now() - TimeDelta::seconds(1));
        let effects = apply(&mut o, input);
        assert!(
            matches!(&effects[..], [Effect::Cancel { reason: r, from: OrderStatus::AwaitingPayment, .. }] if *r == reason),
            "{effects:?}"
        );
        assert_eq!(o.status, OrderStatus::Cancelled);
    }
    let mut o = order();
    let reservation = Uuid::now_v7();
    apply(&mut o, reserved(reservation));
    let effects = apply(&mut o, SagaInput::ReservationExpired { reservation_id: reservation });
    assert!(matches!(&effects[..], [Effect::Cancel { reason: CancellationReason::ReservationExpired, .. }]));
}

#[test]
fn the_deadline_does_nothing_before_it_is_due_or_after_payment() {
    let mut o = order();
    apply(&mut o, reserved(Uuid::now_v7()));
    assert!(apply(&mut o, SagaInput::PaymentDeadlinePassed).is_empty(), "not due yet");
    apply(&mut o, captured(PaymentId::new()));
    o.pay_by = Some(Utc::now() - TimeDelta::seconds(1));
    assert!(apply(&mut o, SagaInput::PaymentDeadlinePassed).is_empty());
    assert_eq!(o.status, OrderStatus::Confirmed);
}

#[test]
fn cancelling_a_paid_order_refunds_it() {
    let mut o = order();
    let payment = PaymentId::new();
    apply(&mut o, reserved(Uuid::now_v7()));
    apply(&mut o, captured(payment));
    let effects = apply(&mut o, SagaInput::CancelRequested);
    assert_eq!(effects.len(), 2);
    assert!(matches!(effects[0], Effect::Cancel { from: OrderStatus::Confirmed, .. }));
    assert_eq!(
        effects[1],
        Effect::Refund { payment_id: payment, amount: eur(2999), reason: RefundReason::OrderCancelled }
    );
}

#[test]
fn late_and_duplicate_captures_are_refunded() {
    let mut o = order();
    apply(&mut o, reserved(Uuid::now_v7()));
    apply(&mut o, SagaInput::CancelRequested);
    let late = PaymentId::new();
    assert_eq!(
        apply(&mut o, captured(late)),
        vec![Effect::Refund { payment_id: late, amount: eur(2999), reason: RefundReason::LateCapture }]
    );
    assert_eq!(o.status, OrderStatus::Cancelled);

    let mut o = order();
    apply(&mut o, reserved(Uuid::now_v7()));
    apply(&mut o, captured(PaymentId::new()));
    let second = PaymentId::new();
    assert_eq!(
        apply(&mut o, captured(second)),
        vec![Effect::Refund { payment_id: second, amount: eur(2999), reason: RefundReason::DuplicateCapture }]
    );
    assert_eq!(o.status, OrderStatus::Confirmed);
}

#[test]
fn every_input_twice_changes_nothing_the_second_time() {
    let (reservation, payment) = (Uuid::now_v7(), PaymentId::new());
    let mut o = order();
    for input in [reserved(reservation), captured(payment)] {
        assert!(!apply(&mut o, input.clone()).is_empty());
        assert!(apply(&mut o, input).is_empty());
    }
    assert_eq!(o.status, OrderStatus::Confirmed);
    let mut o = order();
    apply(&mut o, reserved(reservation));
    assert!(!apply(&mut o, failed(payment)).is_empty());
    assert!(apply(&mut o, failed(payment)).is_empty());
    assert_eq!(o.status, OrderStatus::Cancelled);
}

#[test]
fn early_arrivals_reach_the_same_final_state() {
    let (reservation, payment) = (Uuid::now_v7(), PaymentId::new());
    for (first, second, expected) in [
        (captured(payment), reserved(reservation), OrderStatus::Confirmed),
        (failed(payment), reserved(reservation), OrderStatus::Cancelled),
        (SagaInput::ReservationExpired { reservation_id: reservation }, reserved(reservation), OrderStatus::Cancelled),
    ] {
        let mut in_order = order();
        apply(&mut in_order, second.clone());
        apply(&mut in_order, first.clone());
        let mut reversed = order();
        apply(&mut reversed, first);
        apply(&mut reversed, second);
        assert_eq!((in_order.status, reversed.status), (expected, expected));
    }
}

#[test]
fn requests_that_do_not_fit_the_status_are_errors() {
    let mut o = order();
    let ship = SagaInput::Ship { carrier: "DHL".to_owned(), tracking_number: "1".to_owned() };
    assert!(o.apply(ship.clone(), Utc::now(), WINDOW).is_err(), "a pending order cannot ship");
    assert!(o.apply(SagaInput::Deliver, Utc::now(), WINDOW).is_err());
    apply(&mut o, reserved(Uuid::now_v7()));
    apply(&mut o, captured(PaymentId::new()));
    apply(&mut o, ship);
    let error = o.apply(SagaInput::CancelRequested, Utc::now(), WINDOW).err();
    assert_eq!(error.map(|e| e.to_string()), Some("An order that is shipped cannot be cancelled".to_owned()));
}

#[test]
fn a_capture_of_the_wrong_amount_is_refunded_and_the_order_keeps_waiting() {
    let mut o = order();
    apply(&mut o, reserved(Uuid::now_v7()));
    let short = PaymentId::new();
    let effects = apply(&mut o, SagaInput::PaymentCaptured { payment_id: short, amount: eur(100) });
    assert_eq!(
        effects,
        vec![Effect::Refund { payment_id: short, amount: eur(100), reason: RefundReason::AmountMismatch }]
    );
    assert_eq!(o.status, OrderStatus::AwaitingPayment);
    let good = PaymentId::new();
    assert_eq!(apply(&mut o, captured(good)), vec![Effect::Confirm { payment_id: good }]);
}

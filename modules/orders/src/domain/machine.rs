//! The order saga's state machine (docs/saga.md). An order keeps the facts the saga has
//! learned — the stock outcome, payments captured or failed — and its status follows from
//! them. A fact that arrives early (a capture before the reservation is known) is kept and
//! applied when the order gets there; a fact already known changes nothing. Requests that
//! do not fit the status (shipping a pending order) are errors.

use chrono::{DateTime, TimeDelta, Utc};
use orders_contract::events::{CancellationReason, RefundReason, RejectedLine};
use orders_contract::{OrderId, OrderStatus};
use payments_contract::PaymentId;
use platform::money::Money;
use uuid::Uuid;

/// What inventory said about the order's stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stock {
    /// No answer yet.
    Awaiting,
    Reserved(Uuid),
    Rejected(Vec<RejectedLine>),
    /// The reservation lapsed (possibly announced before the reservation itself arrived).
    Expired(Uuid),
}

/// A payment captured for the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capture {
    pub(crate) payment_id: PaymentId,
    pub(crate) amount: Money,
    /// A refund of it has been asked for.
    pub(crate) refund_requested: bool,
    /// Refunded so far, as payments reported.
    pub(crate) refunded: i64,
}

/// An order as the saga sees it.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) id: OrderId,
    pub(crate) user_id: Uuid,
    pub(crate) status: OrderStatus,
    pub(crate) total: Money,
    /// The customer's payment method token, passed on with the payment request.
    pub(crate) payment_method: String,
    pub(crate) stock: Stock,
    pub(crate) captures: Vec<Capture>,
    /// The first payment failure: (payment id, code).
    pub(crate) failure: Option<(PaymentId, String)>,
    pub(crate) pay_by: Option<DateTime<Utc>>,
    pub(crate) cancellation: Option<(CancellationReason, Option<String>)>,
    pub(crate) shipment: Option<(String, String)>,
}

/// Something the saga learned or was asked.
#[derive(Debug, Clone)]
pub(crate) enum SagaInput {
    StockReserved {
        reservation_id: Uuid,
    },
    StockRejected {
        lines: Vec<RejectedLine>,
    },
    ReservationExpired {
        reservation_id: Uuid,
    },
    PaymentCaptured {
        payment_id: PaymentId,
        amount: Money,
    },
    PaymentFailed {
        payment_id: PaymentId,
        code: String,
    },
    PaymentRefunded {
        payment_id: PaymentId,
        total_refunded: i64,
    },
    /// The payment deadline passed (the scheduled job).
    PaymentDeadlinePassed,
    /// The customer (or an admin for them) cancels.
    CancelRequested,
    Ship {
        carrier: String,
        tracking_number: String,
    },
    Deliver,
}

/// What a transition asks the service to do, in its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Append `orders.payment_requested` and schedule the payment deadline.
    RequestPayment {
        pay_by: DateTime<Utc>,
    },
    Confirm {
        payment_id: PaymentId,
    },
    Reject {
        lines: Vec<RejectedLine>,
    },
    Cancel {
        reason: CancellationReason,
        detail: Option<String>,
        from: OrderStatus,
    },
    Refund {
        payment_id: PaymentId,
        amount: Money,
        reason: RefundReason,
    },
    Ship {
        carrier: String,
        tracking_number: String,
    },
    Deliver,
}

/// A fact worth a timeline entry or a log line, even when the status stays.
pub(crate) type Fact = &'static str;

/// The outcome of applying an input.
#[derive(Debug, Default)]
pub(crate) struct Transition {
    /// The new status, when it changed.
    pub(crate) to: Option<OrderStatus>,
    pub(crate) effects: Vec<Effect>,
    /// Why nothing changed (duplicate, contradiction, early arrival), for the log.
    pub(crate) unchanged_because: Option<Fact>,
}

impl Transition {
    fn unchanged(because: Fact) -> Self {
        Self { unchanged_because: Some(because), ..Self::default() }
    }
}

/// A request that does not fit the order's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("An order that is {} cannot be {action}", from.as_str().replace('_', " "))]
pub(crate) struct TransitionError {
    pub(crate) from: OrderStatus,
    pub(crate) action: &'static str,
}

impl Order {
    /// Applies `input` at `now`; a payment is due `payment_window` after stock is reserved.
    ///
    /// # Errors
    /// [`TransitionError`] for requests (cancel, ship, deliver) the status does not allow.
    /// Events never fail: what does not fit is kept as a fact or ignored.
    pub(crate) fn apply(
        &mut self,
        input: SagaInput,
        now: DateTime<Utc>,
        payment_window: TimeDelta,
    ) -> Result<Transition, TransitionError> {
        use OrderStatus as S;
        Ok(match input {
            SagaInput::StockReserved { reservation_id } => {
                if self.stock != Stock::Awaiting {
                    return Ok(Transition::unchanged("the stock outcome is already known"));
                }
                self.stock = Stock::Reserved(reservation_id);
                if self.status == S::Pending {
                    self.after_reservation(now, payment_window)
                } else {
                    Transition::unchanged("stock reserved for an order no longer pending")
                }
            }
            SagaInput::StockRejected { lines } => {
                if self.stock != Stock::Awaiting {
                    return Ok(Transition::unchanged("the stock outcome is already known"));
                }
                self.stock = Stock::Rejected(lines.clone());
                if self.status != S::Pending {
                    return Ok(Transition::unchanged("stock rejected for an order no longer pending"));
                }
                let mut transition = self.move_to(S::Rejected, Effect::Reject { lines });
                transition.effects.extend(self.refund_captures(RefundReason::LateCapture));
                transition
            }
            SagaInput::ReservationExpired { reservation_id } => {
                match &self.stock {
                    Stock::Awaiting => self.stock = Stock::Expired(reservation_id),
                    Stock::Reserved(held) if *held == reservation_id => self.stock = Stock::Expired(reservation_id),
                    _ => return Ok(Transition::unchanged("no such live reservation")),
                }
                if matches!(self.status, S::Pending | S::AwaitingPayment) {
                    self.cancel(CancellationReason::ReservationExpired, None)
                } else {
                    Transition::unchanged("the reservation lapsed after the order moved on")
                }
            }
            SagaInput::PaymentCaptured { payment_id, amount } => {
                if self.captures.iter().any(|c| c.payment_id == payment_id) {
                    return Ok(Transition::unchanged("this capture is already known"));
                }
                if amount != self.total {
                    // Not this order's price: give it back and keep waiting for one that is.
                    self.captures.push(Capture { payment_id, amount, refund_requested: false, refunded: 0 });
                    return Ok(self.refund_one(payment_id, RefundReason::AmountMismatch));
                }
                let first = self.paying_capture().is_none();
                self.captures.push(Capture { payment_id, amount, refund_requested: false, refunded: 0 });
                match self.status {
                    S::Pending => Transition::unchanged("captured before the stock was reserved; kept for later"),
                    S::AwaitingPayment if first => self.move_to(S::Confirmed, Effect::Confirm { payment_id }),
                    S::AwaitingPayment | S::Confirmed | S::Shipped | S::Delivered => {
                        self.refund_one(payment_id, RefundReason::DuplicateCapture)
                    }
                    S::Cancelled | S::Rejected => self.refund_one(payment_id, RefundReason::LateCapture),
                }
            }
            SagaInput::PaymentFailed { payment_id, code } => {
                if self.failure.is_some() {
                    return Ok(Transition::unchanged("a payment failure is already known"));
                }
                self.failure = Some((payment_id, code.clone()));
                match self.status {
                    S::Pending => Transition::unchanged("failed before the stock was reserved; kept for later"),
                    S::AwaitingPayment if self.paying_capture().is_none() => {
                        self.cancel(CancellationReason::PaymentFailed, Some(code))
                    }
                    _ => Transition::unchanged("a payment failed for an order no longer awaiting payment"),
                }
            }
            SagaInput::PaymentRefunded { payment_id, total_refunded } => {
                match self.captures.iter_mut().find(|c| c.payment_id == payment_id) {
                    Some(capture) if capture.refunded < total_refunded => {
                        capture.refunded = total_refunded;
                        Transition::unchanged("refund recorded")
                    }
                    Some(_) => Transition::unchanged("this refund is already known"),
                    None => Transition::unchanged("a refund for a payment this order does not know"),
                }
            }
            SagaInput::PaymentDeadlinePassed => {
                let due = self.pay_by.is_some_and(|pay_by| pay_by <= now);
                if self.status == S::AwaitingPayment && self.paying_capture().is_none() && due {
                    self.cancel(CancellationReason::PaymentTimeout, None)
                } else {
                    Transition::unchanged("the payment deadline no longer applies")
                }
            }
            SagaInput::CancelRequested => match self.status {
                S::Pending | S::AwaitingPayment | S::Confirmed => {
                    self.cancel(CancellationReason::CustomerRequest, None)
                }
                from => return Err(TransitionError { from, action: "cancelled" }),
            },
            SagaInput::Ship { carrier, tracking_number } => match self.status {
                S::Confirmed => {
                    self.shipment = Some((carrier.clone(), tracking_number.clone()));
                    self.move_to(S::Shipped, Effect::Ship { carrier, tracking_number })
                }
                from => return Err(TransitionError { from, action: "shipped" }),
            },
            SagaInput::Deliver => match self.status {
                S::Shipped => self.move_to(S::Delivered, Effect::Deliver),
                from => return Err(TransitionError { from, action: "delivered" }),
            },
        })
    }

    /// The capture that pays for the order: the first of its total not given back.
    pub(crate) fn paying_capture(&self) -> Option<&Capture> {
        self.captures.iter().find(|c| c.amount == self.total && !c.refund_requested)
    }

    /// The order is pending and its stock is now reserved: facts kept from earlier decide.
    fn after_reservation(&mut self, now: DateTime<Utc>, payment_window: TimeDelta) -> Transition {
        if let Some(capture) = self.paying_capture() {
            let payment_id = capture.payment_id;
            return self.move_to(OrderStatus::Confirmed, Effect::Confirm { payment_id });
        }
        if let Some((_, code)) = self.failure.clone() {
            return self.cancel(CancellationReason::PaymentFailed, Some(code));
        }
        let pay_by = now + payment_window;
        self.pay_by = Some(pay_by);
        self.move_to(OrderStatus::AwaitingPayment, Effect::RequestPayment { pay_by })
    }

    fn move_to(&mut self, to: OrderStatus, effect: Effect) -> Transition {
        self.status = to;
        Transition { to: Some(to), effects: vec![effect], unchanged_because: None }
    }

    /// Cancels, and asks for every capture not yet refunded to be refunded.
    fn cancel(&mut self, reason: CancellationReason, detail: Option<String>) -> Transition {
        let from = self.status;
        self.cancellation = Some((reason, detail.clone()));
        let mut transition = self.move_to(OrderStatus::Cancelled, Effect::Cancel { reason, detail, from });
        transition.effects.extend(self.refund_captures(RefundReason::OrderCancelled));
        transition
    }

    fn refund_captures(&mut self, reason: RefundReason) -> Vec<Effect> {
        self.captures
            .iter_mut()
            .filter(|capture| !capture.refund_requested)
            .map(|capture| {
                capture.refund_requested = true;
                Effect::Refund { payment_id: capture.payment_id, amount: capture.amount, reason }
            })
            .collect()
    }

    fn refund_one(&mut self, payment_id: PaymentId, reason: RefundReason) -> Transition {
        let effects = self
            .captures
            .iter_mut()
            .filter(|capture| capture.payment_id == payment_id && !capture.refund_requested)
            .map(|capture| {
                capture.refund_requested = true;
                Effect::Refund { payment_id, amount: capture.amount, reason }
            })
            .collect();
        Transition { to: None, effects, unchanged_because: Some("status unchanged; the capture is refunded") }
    }
}

#[cfg(test)]
mod tests;

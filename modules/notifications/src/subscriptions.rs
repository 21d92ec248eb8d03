//! The module's subscriptions: the events of users, orders, payments and inventory that
//! someone should hear about. Each handler records its notifications in the handler's
//! transaction (`service::record`); webhook endpoints hear about every one of these events.

use std::sync::Arc;
use std::time::Duration;

use inventory_contract::events::LowStock;
use orders_contract::events::{CancellationReason, OrderCancelled, OrderConfirmed, OrderPlaced, OrderShipped};
use payments_contract::events::{FailureCode, PaymentFailed, PaymentRefunded};
use platform::bus::event::EventRef;
use platform::bus::{Event, Handler, HandlerContext, RetryPolicy, StartFrom, Subscription};
use serde_json::json;
use users_contract::events::{EmailVerificationRequested, PasswordResetRequested, UserRegistered};
use uuid::Uuid;

use crate::domain::Template;
use crate::service::{Message, NotificationsService};
use crate::store::order_owners;

/// Partitions per subscription: one user's (order's, product's) events in order, different
/// ones in parallel.
const PARTITIONS: u16 = 4;

/// A handler fails when the users module does not answer, or when a payment event's order
/// is not known yet: retry for about an hour (1 s doubling to 5 min, 20 attempts) before
/// dead-lettering, so an outage of users does not send events to the dead letters in
/// minutes. The partition waits meanwhile; its events keep their order.
fn retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 20, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(300) }
}

/// The event types a webhook endpoint may ask for: those this module handles.
/// The event that tells whose an order is (payment events carry only the order id).
pub(crate) const ORDER_OWNERS: EventRef = EventRef::of::<OrderPlaced>();

pub(crate) const EVENT_TYPES: [EventRef; 9] = [
    EventRef::of::<UserRegistered>(),
    EventRef::of::<EmailVerificationRequested>(),
    EventRef::of::<PasswordResetRequested>(),
    EventRef::of::<OrderConfirmed>(),
    EventRef::of::<OrderCancelled>(),
    EventRef::of::<OrderShipped>(),
    EventRef::of::<PaymentFailed>(),
    EventRef::of::<PaymentRefunded>(),
    EventRef::of::<LowStock>(),
];

/// Who is told, and what, about one event.
enum Audience {
    User(Uuid, Message),
    /// The customer of an order known from `orders.order_placed`.
    OrderOwner(Uuid, Message),
    Admins(Message),
}

/// A subscription that tells people and endpoints: it starts at the head of its source's
/// log, so enabling notifications in a running shop does not mail a week of old events
/// (ADR 0013). Later restarts resume from the cursor, so nothing is missed after that.
fn telling(name: &'static str, source: &'static str) -> Subscription {
    Subscription::new(name, source).partitions(PARTITIONS).retry(retry()).start_from(StartFrom::Latest)
}

pub(crate) fn all(service: &Arc<NotificationsService>) -> Vec<Subscription> {
    // Learns whose each order is from the oldest retained event: payment events wait (fail
    // and are retried) until their order's owner is known, so this one must see every order,
    // including those placed before notifications were enabled. It tells no one.
    let order_owners = Subscription::new("notifications.order_owners", "orders")
        .partitions(PARTITIONS)
        .retry(retry())
        .start_from(StartFrom::Beginning)
        .on(RememberOwner(service.clone()));
    let users = telling("notifications.users", "users")
        .on(Notify::new(service, |e: UserRegistered| {
            Audience::User(e.user_id.0, Message::new(Template::Welcome, json!({})).with_link(e.verification_request))
        }))
        .on(Notify::new(service, |e: EmailVerificationRequested| {
            Audience::User(e.user_id.0, Message::new(Template::VerifyEmail, json!({})).with_link(e.request_id))
        }))
        .on(Notify::new(service, |e: PasswordResetRequested| {
            Audience::User(e.user_id.0, Message::new(Template::PasswordReset, json!({})).with_link(e.request_id))
        }));
    let orders = telling("notifications.orders", "orders")
        .on(Notify::new(service, |e: OrderConfirmed| {
            let variables = json!({"order_id": e.order_id.to_string(), "total": e.total.to_string()});
            Audience::User(e.user_id, Message::new(Template::OrderConfirmed, variables))
        }))
        .on(Notify::new(service, |e: OrderCancelled| {
            let refund_due = matches!(
                e.cancelled_from,
                orders_contract::OrderStatus::Confirmed | orders_contract::OrderStatus::Shipped
            );
            let variables = json!({
                "order_id": e.order_id.to_string(), "reason": cancellation(e.reason), "refund_due": refund_due,
            });
            Audience::User(e.user_id, Message::new(Template::OrderCancelled, variables))
        }))
        .on(Notify::new(service, |e: OrderShipped| {
            let variables = json!({
                "order_id": e.order_id.to_string(), "carrier": e.carrier, "tracking_number": e.tracking_number,
            });
            Audience::User(e.user_id, Message::new(Template::OrderShipped, variables))
        }));
    let payments = telling("notifications.payments", "payments")
        .on(Notify::new(service, |e: PaymentFailed| {
            let variables = json!({"order_id": e.order_id.to_string(), "reason": failure(e.code)});
            Audience::OrderOwner(e.order_id, Message::new(Template::PaymentFailed, variables))
        }))
        .on(Notify::new(service, |e: PaymentRefunded| {
            let variables = json!({
                "order_id": e.order_id.to_string(), "amount": e.amount.to_string(),
                "total_refunded": e.total_refunded.to_string(), "fully_refunded": e.fully_refunded,
            });
            Audience::OrderOwner(e.order_id, Message::new(Template::PaymentRefunded, variables))
        }));
    let inventory = telling("notifications.inventory", "inventory").on(Notify::new(service, |e: LowStock| {
        let variables = json!({
            "sku": e.sku, "product_name": e.name, "available": e.available, "threshold": e.threshold,
        });
        Audience::Admins(Message::new(Template::LowStock, variables))
    }));
    vec![order_owners, users, orders, payments, inventory]
}

fn cancellation(reason: CancellationReason) -> &'static str {
    match reason {
        CancellationReason::CustomerRequest => "you asked us to cancel it",
        CancellationReason::PaymentFailed => "the payment did not go through",
        CancellationReason::PaymentTimeout => "no payment arrived in time",
        CancellationReason::ReservationExpired => "the items could not be held any longer",
    }
}

fn failure(code: FailureCode) -> &'static str {
    match code {
        FailureCode::CardDeclined => "your card was declined",
        FailureCode::InsufficientFunds => "the card has insufficient funds",
        FailureCode::ExpiredCard => "the card has expired",
        FailureCode::InvalidPaymentMethod => "the payment method is not valid",
        FailureCode::ProcessingError => "the payment provider could not process it",
    }
}

/// Tells the audience of one event type, and the webhook endpoints that asked for it.
struct Notify<F> {
    service: Arc<NotificationsService>,
    audience_of: F,
}

impl<F> Notify<F> {
    fn new(service: &Arc<NotificationsService>, audience_of: F) -> Self {
        Self { service: service.clone(), audience_of }
    }
}

#[async_trait::async_trait]
impl<E, F> Handler<E> for Notify<F>
where
    E: Event,
    F: Fn(E) -> Audience + Send + Sync + 'static,
{
    async fn handle(&self, ctx: &mut HandlerContext<'_>, event: E) -> anyhow::Result<()> {
        let service = &self.service;
        service.tell_webhooks(ctx).await?;
        match (self.audience_of)(event) {
            Audience::User(user, message) => service.tell_user(ctx, user, message).await,
            Audience::Admins(message) => service.tell_admins(ctx, message).await,
            Audience::OrderOwner(order, message) => match order_owners::find(ctx.tx, order).await? {
                Some(user) => service.tell_user(ctx, user, message).await,
                // Orders' events are read by another subscription, which may lag behind this
                // one: fail, so the bus retries once it has caught up.
                None => anyhow::bail!("the customer of order {order} is not known yet"),
            },
        }
    }
}

/// Remembers who placed each order, for payments' events.
struct RememberOwner(Arc<NotificationsService>);

#[async_trait::async_trait]
impl Handler<OrderPlaced> for RememberOwner {
    async fn handle(&self, ctx: &mut HandlerContext<'_>, event: OrderPlaced) -> anyhow::Result<()> {
        order_owners::record(ctx.tx, event.order_id.0, event.user_id, self.0.now()).await
    }
}

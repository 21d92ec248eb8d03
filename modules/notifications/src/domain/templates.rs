//! The messages the module sends: one template per event, in text and HTML (HTML
//! auto-escaped), kept as files in `src/templates/` and compiled into the binary. Rendered
//! with minijinja; an undefined variable is an error, never an empty string.

use anyhow::Context;
use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use users_contract::Category;

/// Which message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Template {
    /// `users.user_registered`: welcome, with the email verification link.
    Welcome,
    /// `users.email_verification_requested`: a new verification link.
    VerifyEmail,
    /// `users.password_reset_requested`.
    PasswordReset,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    PaymentFailed,
    PaymentRefunded,
    /// `inventory.low_stock`, to every active admin.
    LowStock,
}

/// A rendered message. Its bodies may hold a one-time link, so `Debug` shows the subject only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub(crate) subject: String,
    pub(crate) text: String,
    pub(crate) html: String,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered").field("subject", &self.subject).finish_non_exhaustive()
    }
}

pub(crate) const ALL: [Template; 9] = [
    Template::Welcome,
    Template::VerifyEmail,
    Template::PasswordReset,
    Template::OrderConfirmed,
    Template::OrderCancelled,
    Template::OrderShipped,
    Template::PaymentFailed,
    Template::PaymentRefunded,
    Template::LowStock,
];

impl Template {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::OrderConfirmed => "order_confirmed",
            Self::OrderCancelled => "order_cancelled",
            Self::OrderShipped => "order_shipped",
            Self::PaymentFailed => "payment_failed",
            Self::PaymentRefunded => "payment_refunded",
            Self::LowStock => "low_stock",
        }
    }

    pub(crate) fn parse(raw: &str) -> Option<Self> {
        ALL.into_iter().find(|t| t.key() == raw)
    }

    /// The subject line, a template too (its variables never include the link).
    fn subject(self) -> &'static str {
        match self {
            Self::Welcome => "Welcome to {{ shop_name }}: please confirm your email",
            Self::VerifyEmail => "Confirm your email address",
            Self::PasswordReset => "Reset your {{ shop_name }} password",
            Self::OrderConfirmed => "Order {{ order_id }} confirmed",
            Self::OrderCancelled => "Order {{ order_id }} cancelled",
            Self::OrderShipped => "Order {{ order_id }} shipped",
            Self::PaymentFailed => "Payment for order {{ order_id }} failed",
            Self::PaymentRefunded => "Refund for order {{ order_id }}",
            Self::LowStock => "Low stock: {{ sku }} ({{ available }} left)",
        }
    }

    /// Whether the message carries a one-time link, minted with `UsersApi::action_link`
    /// just before sending (ADR 0008): its body is only ever rendered then.
    pub(crate) fn carries_link(self) -> bool {
        matches!(self, Self::Welcome | Self::VerifyEmail | Self::PasswordReset)
    }

    /// Every message here is about something the recipient did or runs (their account, their
    /// order, the shop's stock for admins), so all are transactional (ADR 0013): transactional
    /// email is always sent, whatever the preferences.
    pub(crate) fn category(self) -> Category {
        Category::Transactional
    }
}

fn sources(template: Template) -> (&'static str, &'static str) {
    match template {
        Template::Welcome => (include_str!("../templates/welcome.txt"), include_str!("../templates/welcome.html")),
        Template::VerifyEmail => {
            (include_str!("../templates/verify_email.txt"), include_str!("../templates/verify_email.html"))
        }
        Template::PasswordReset => {
            (include_str!("../templates/password_reset.txt"), include_str!("../templates/password_reset.html"))
        }
        Template::OrderConfirmed => {
            (include_str!("../templates/order_confirmed.txt"), include_str!("../templates/order_confirmed.html"))
        }
        Template::OrderCancelled => {
            (include_str!("../templates/order_cancelled.txt"), include_str!("../templates/order_cancelled.html"))
        }
        Template::OrderShipped => {
            (include_str!("../templates/order_shipped.txt"), include_str!("../templates/order_shipped.html"))
        }
        Template::PaymentFailed => {
            (include_str!("../templates/payment_failed.txt"), include_str!("../templates/payment_failed.html"))
        }
        Template::PaymentRefunded => {
            (include_str!("../templates/payment_refunded.txt"), include_str!("../templates/payment_refunded.html"))
        }
        Template::LowStock => (include_str!("../templates/low_stock.txt"), include_str!("../templates/low_stock.html")),
    }
}

/// Every template, parsed once.
#[derive(Debug)]
pub(crate) struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// Parses every template.
    ///
    /// # Errors
    /// A template that does not parse (a unit test renders them all).
    pub(crate) fn new() -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.add_template("base.txt", include_str!("../templates/base.txt")).context("parsing base.txt")?;
        env.add_template("base.html", include_str!("../templates/base.html")).context("parsing base.html")?;
        for template in ALL {
            let (text, html) = sources(template);
            let key = template.key();
            env.add_template_owned(format!("{key}.txt"), text).with_context(|| format!("parsing {key}.txt"))?;
            env.add_template_owned(format!("{key}.html"), html).with_context(|| format!("parsing {key}.html"))?;
            env.add_template(subject_name(template), template.subject())
                .with_context(|| format!("parsing the subject of {key}"))?;
        }
        Ok(Self { env })
    }

    /// The subject of `template` with `context`.
    ///
    /// # Errors
    /// A variable the template needs is missing.
    pub(crate) fn subject(&self, template: Template, context: &serde_json::Value) -> anyhow::Result<String> {
        let subject = self.env.get_template(subject_name(template))?.render(context)?;
        Ok(subject.trim().to_owned())
    }

    /// The whole message. `context` must hold the link for templates that carry one.
    ///
    /// # Errors
    /// A variable the template needs is missing.
    pub(crate) fn render(&self, template: Template, context: &serde_json::Value) -> anyhow::Result<Rendered> {
        let key = template.key();
        let subject = self.subject(template, context)?;
        let mut context = context.clone();
        if let Some(map) = context.as_object_mut() {
            map.insert("subject".to_owned(), subject.clone().into());
        }
        let text =
            self.env.get_template(&format!("{key}.txt"))?.render(&context).with_context(|| format!("{key}.txt"))?;
        let html =
            self.env.get_template(&format!("{key}.html"))?.render(&context).with_context(|| format!("{key}.html"))?;
        Ok(Rendered { subject, text, html })
    }
}

fn subject_name(template: Template) -> &'static str {
    match template {
        Template::Welcome => "welcome.subject",
        Template::VerifyEmail => "verify_email.subject",
        Template::PasswordReset => "password_reset.subject",
        Template::OrderConfirmed => "order_confirmed.subject",
        Template::OrderCancelled => "order_cancelled.subject",
        Template::OrderShipped => "order_shipped.subject",
        Template::PaymentFailed => "payment_failed.subject",
        Template::PaymentRefunded => "payment_refunded.subject",
        Template::LowStock => "low_stock.subject",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use serde_json::json;

    use super::*;

    fn context() -> serde_json::Value {
        json!({
            "shop_name": "Bulkhead", "name": "Ada <Lovelace>", "link": "https://shop.example.com/verify-email?token=t",
            "link_expires_at": "2026-11-22 09:30 UTC", "order_id": "0193b5f2", "total": "29.99 EUR",
            "reason": "your card was declined", "refund_due": true, "carrier": "DHL", "tracking_number": "JD01",
            "amount": "10.00 EUR", "total_refunded": "10.00 EUR", "fully_refunded": false, "sku": "MUG-001",
            "product_name": "Enamel mug", "available": 3, "threshold": 5
        })
    }

    #[test]
    fn every_template_renders_in_text_and_html() {
        let templates = Templates::new().unwrap();
        for template in ALL {
            let rendered = templates.render(template, &context()).unwrap();
            assert!(!rendered.subject.is_empty(), "{template:?}");
            assert!(rendered.text.contains("Hello Ada <Lovelace>,"), "{template:?}: text is not escaped");
            assert!(rendered.html.contains("Hello Ada &lt;Lovelace&gt;,"), "{template:?}: HTML is escaped");
            assert_eq!(Template::parse(template.key()), Some(template));
        }
    }

    #[test]
    fn a_missing_variable_is_an_error_not_an_empty_string() {
        let templates = Templates::new().unwrap();
        let error = templates.render(Template::OrderShipped, &json!({"shop_name": "Bulkhead", "name": "Ada"}));
        assert!(error.is_err());
    }

    #[test]
    fn only_account_messages_carry_a_link() {
        let with_link: Vec<Template> = ALL.into_iter().filter(|t| t.carries_link()).collect();
        assert_eq!(with_link, vec![Template::Welcome, Template::VerifyEmail, Template::PasswordReset]);
    }
}

//! The checkout page, `GET /pay/{payment_hash}`: what it shows, its QR
//! code, who may embed it and where it may send the browser after payment.

pub mod page;
pub mod qr;
pub mod settings;
pub mod success_url;
pub mod view;

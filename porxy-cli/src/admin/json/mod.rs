//! The admin API's JSON: the routing table both ways ([`routes`] out, [`route_lift`] in),
//! status ([`status`]), and what commands did ([`outcome`]).

pub mod outcome;
pub mod route_lift;
pub mod routes;
pub mod status;

//! Pure functions from what agents observed to what the user reads:
//! audit's findings and `ls node/NODE`'s inventory.

pub mod findings;
pub mod inventory;

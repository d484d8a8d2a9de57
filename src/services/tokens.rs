//! Tokens (AF §3.3, MR §3.3): an HS256 JWT with only `id`, `role`, `iat`, `jti`; the store keeps
//! every token's device binding and state, and the user's single active token.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::store::tokens::{self as store, TokenRow, ACTIVE, RETIRED, REVOKED};
use crate::store::Tx;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub id: i64,
    pub role: String,
    pub iat: i64,
    pub jti: String,
}

pub struct Keys {
    enc: EncodingKey,
    dec: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &[u8]) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        Keys {
            enc: EncodingKey::from_secret(secret),
            dec: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Deterministic: the same claims always give the same token text (API 十三 answers a
    /// device's existing token by re-encoding its stored claims).
    pub fn encode(&self, c: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), c, &self.enc)
            .expect("HS256 encoding of plain claims cannot fail")
    }

    /// Signature check only; `None` for anything malformed (AF §9 D7: never a 500).
    pub fn decode(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.dec, &self.validation)
            .ok()
            .map(|d| d.claims)
    }

    pub fn token_of(&self, row: &TokenRow) -> String {
        self.encode(&Claims {
            id: row.user_id,
            role: row.role.clone(),
            iat: row.iat,
            jti: row.jti.clone(),
        })
    }
}

/// How a previous token of the user ended when a new one was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Same device, logout: its sockets go inert.
    Retired,
    /// Replaced from another device (kick its sockets) or from no device (no kick).
    Revoked { kick: bool },
}

#[derive(Debug)]
pub struct Issued {
    pub token: String,
    pub row: TokenRow,
    pub ended: Vec<(TokenRow, Ended)>,
}

/// Issue a new active token for (user, session role), bound to `device`, replacing the previous one
/// (AF §6.1 step 5). Runs in the caller's transaction; the caller applies `ended` to live sockets
/// after commit.
pub async fn issue(
    tx: &mut Tx,
    keys: &Keys,
    user_id: i64,
    role: &str,
    device: Option<&str>,
) -> sqlx::Result<Issued> {
    store::lock_session(tx, user_id).await?;
    let mut ended = Vec::new();
    for prev in store::active_of(tx, user_id).await? {
        let how = match (prev.device_id.as_deref(), device) {
            (Some(a), Some(b)) if a == b => Ended::Retired,
            (Some(_), _) => Ended::Revoked { kick: true },
            (None, _) => Ended::Revoked { kick: false },
        };
        let state = if how == Ended::Retired {
            RETIRED
        } else {
            REVOKED
        };
        store::set_state(tx, &prev.jti, state).await?;
        ended.push((prev, how));
    }
    let row = TokenRow {
        jti: uuid::Uuid::new_v4().simple().to_string(),
        user_id,
        device_id: device.map(String::from),
        role: role.to_string(),
        iat: chrono::Utc::now().timestamp(),
        state: ACTIVE,
    };
    store::insert(tx, &row).await?;
    if let Some(d) = device {
        store::retire_revoked_of_device(tx, d).await?;
    }
    Ok(Issued {
        token: keys.encode(&Claims {
            id: row.user_id,
            role: row.role.clone(),
            iat: row.iat,
            jti: row.jti.clone(),
        }),
        row,
        ended,
    })
}

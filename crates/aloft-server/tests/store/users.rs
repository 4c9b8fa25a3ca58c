//! Users and tokens.

use aloft_server::store::{Store as _, StoreError, TokenKind, TokenRow, UserRow};

use crate::Db;

pub(crate) fn user(id: &str, email: &str) -> UserRow {
    UserRow {
        id: id.into(),
        email: email.into(),
        password_hash: "$argon2id$x".into(),
        created_ts: 1,
        updated_ts: 1,
        login_ts: None,
    }
}

pub(crate) fn token(jti: &str, kind: TokenKind, subject: &str, created: i64) -> TokenRow {
    TokenRow {
        jti: jti.into(),
        kind,
        subject: subject.into(),
        name: (kind == TokenKind::Pat).then(|| format!("pat-{jti}")),
        created_ts: created,
        expires_ts: None,
        last_used: None,
    }
}

pub(crate) async fn emails_are_unique(db: Db) {
    db.create_user(&user("u1", "a@example.com")).await.unwrap();
    let again = db.create_user(&user("u2", "a@example.com")).await;
    assert!(matches!(again, Err(StoreError::Rule(_))), "{again:?}");
    db.create_user(&user("u2", "b@example.com")).await.unwrap();
    let mut b = db.user("u2").await.unwrap().unwrap();
    b.email = "a@example.com".into();
    assert!(matches!(db.update_user(&b).await, Err(StoreError::Rule(_))));
    assert_eq!(
        db.user_by_email("b@example.com").await.unwrap().unwrap().id,
        "u2"
    );
    assert!(matches!(
        db.update_user(&user("nobody", "c@example.com")).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.users().await.unwrap().len(), 2);
}

pub(crate) async fn deleting_a_user_revokes_their_tokens(db: Db) {
    db.create_user(&user("u1", "a@example.com")).await.unwrap();
    db.insert_token(&token("s1", TokenKind::Session, "u1", 1), 10, 10)
        .await
        .unwrap();
    db.insert_token(&token("p1", TokenKind::Pat, "u1", 2), 10, 10)
        .await
        .unwrap();
    assert!(db.delete_user("u1").await.unwrap());
    assert!(db.use_token("s1", 3).await.unwrap().is_none());
    assert!(db.use_token("p1", 3).await.unwrap().is_none());
    assert!(!db.delete_user("u1").await.unwrap());
}

pub(crate) async fn sessions_and_pats_are_bounded(db: Db) {
    for i in 0..4 {
        db.insert_token(&token(&format!("s{i}"), TokenKind::Session, "u1", i), 2, 10)
            .await
            .unwrap();
    }
    // The two newest sessions stay.
    assert!(db.use_token("s0", 9).await.unwrap().is_none());
    assert!(db.use_token("s1", 9).await.unwrap().is_none());
    assert!(db.use_token("s3", 9).await.unwrap().is_some());
    db.insert_token(&token("p1", TokenKind::Pat, "u1", 1), 2, 2)
        .await
        .unwrap();
    let mut dup = token("p2", TokenKind::Pat, "u1", 2);
    dup.name = Some("pat-p1".into());
    assert!(matches!(
        db.insert_token(&dup, 2, 2).await,
        Err(StoreError::Conflict(_))
    ));
    db.insert_token(&token("p2", TokenKind::Pat, "u1", 2), 2, 2)
        .await
        .unwrap();
    assert!(matches!(
        db.insert_token(&token("p3", TokenKind::Pat, "u1", 3), 2, 2)
            .await,
        Err(StoreError::Rule(_))
    ));
    assert_eq!(db.pats("u1").await.unwrap().len(), 2);
    // Revoking names the subject: someone else's token is not theirs to revoke.
    assert!(!db.delete_token("p1", Some("u2")).await.unwrap());
    assert!(db.delete_token("p1", Some("u1")).await.unwrap());
}

pub(crate) async fn expired_tokens_are_not_honoured(db: Db) {
    let mut t = token("s1", TokenKind::Session, "u1", 1);
    t.expires_ts = Some(100);
    db.insert_token(&t, 10, 10).await.unwrap();
    assert!(db.use_token("s1", 99).await.unwrap().is_some());
    assert!(db.use_token("s1", 100).await.unwrap().is_none());
    db.insert_token(&token("p1", TokenKind::Pat, "u1", 1), 10, 10)
        .await
        .unwrap();
    db.use_token("p1", 5).await.unwrap();
    let used = db.pats("u1").await.unwrap()[0].last_used;
    assert_eq!(used, Some(5));
}

pub(crate) async fn a_device_keeps_its_newest_tokens(db: Db) {
    for i in 0..6 {
        db.insert_token(
            &token(&format!("d{i}"), TokenKind::Device, "dev", i),
            10,
            10,
        )
        .await
        .unwrap();
    }
    assert!(db.use_token("d1", 9).await.unwrap().is_none());
    for i in 2..6 {
        assert!(
            db.use_token(&format!("d{i}"), 9).await.unwrap().is_some(),
            "d{i}"
        );
    }
}

pub(crate) async fn revoking_a_subjects_tokens_keeps_the_named_one(db: Db) {
    for t in [
        token("s1", TokenKind::Session, "u1", 1),
        token("s2", TokenKind::Session, "u1", 1),
        token("p1", TokenKind::Pat, "u1", 1),
        token("s3", TokenKind::Session, "u2", 1),
    ] {
        db.insert_token(&t, 10, 10).await.unwrap();
    }
    let kinds = [TokenKind::Session, TokenKind::Pat];
    assert_eq!(
        db.revoke_tokens_of("u1", &kinds, Some("s1")).await.unwrap(),
        2
    );
    for (jti, alive) in [("s1", true), ("s2", false), ("p1", false), ("s3", true)] {
        assert_eq!(
            db.use_token(jti, 2).await.unwrap().is_some(),
            alive,
            "{jti}"
        );
    }
    assert_eq!(db.revoke_tokens_of("u1", &kinds, None).await.unwrap(), 1);
    assert!(db.use_token("s1", 2).await.unwrap().is_none());
}

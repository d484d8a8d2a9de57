//! Durable timelines (ARCHITECTURE "Messages: durable first, then pushed").

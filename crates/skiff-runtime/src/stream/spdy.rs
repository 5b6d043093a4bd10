//! SPDY/3.1 remotecommand driver (kubectl's fallback when WebSockets fail).
//! To be written.

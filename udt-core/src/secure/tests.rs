//! Round trips of the secure handshake through the caller and listener machines.

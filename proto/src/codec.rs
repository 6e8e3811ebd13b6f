//! The gRPC codec of the generated client and server: prost's messages, each encoded in one
//! pass into a reused buffer and decoded from the frame's bytes in place.
//!
//! Why not `tonic_prost::ProstCodec` as it is: it encodes straight into tonic's `EncodeBuf` and
//! decodes from its `DecodeBuf`, which do not override `put_u8`/`get_u8`, so every byte of
//! every varint goes through a call into `BytesMut` (`put_slice` then `memcpy` for one byte,
//! `advance` for each read): the largest single cost of a discount RPC in the profile. Here a
//! message is encoded into a `Vec<u8>` kept per thread (inlined byte writes, then one copy into
//! the frame) and decoded from a `&[u8]` over the frame (inlined reads). The bytes on the wire
//! are the same, so any gRPC peer still talks to ours.

use std::cell::RefCell;
use std::marker::PhantomData;

use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A buffer larger than this after encoding is not kept for the next message, so one large
/// message does not pin its size per thread.
const KEEP_BUFFER_BYTES: usize = 64 * 1024;

thread_local! {
    static ENCODE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `application/grpc+proto` with prost's messages (see the module's documentation).
#[derive(Debug)]
pub struct ProtoCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProtoCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProtoCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProtoEncoder<T>;
    type Decoder = ProtoDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProtoEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProtoDecoder(PhantomData)
    }
}

/// Encodes a `T` into the thread's buffer, then into the frame in one copy.
#[derive(Debug)]
pub struct ProtoEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for ProtoEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        ENCODE_BUFFER.with_borrow_mut(|bytes| {
            bytes.clear();
            bytes.reserve(item.encoded_len());
            item.encode_raw(bytes);
            buf.put_slice(bytes);
            if bytes.capacity() > KEEP_BUFFER_BYTES {
                *bytes = Vec::new();
            }
        });
        Ok(())
    }
}

/// Decodes a `U` from the frame's bytes where they lie.
#[derive(Debug)]
pub struct ProtoDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for ProtoDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let len = buf.remaining();
        // A frame is one contiguous `BytesMut` in tonic; should it ever not be, it is gathered
        // into one piece first.
        let message = if buf.chunk().len() >= len {
            let message = U::decode(&buf.chunk()[..len]);
            buf.advance(len);
            message
        } else {
            U::decode(buf.copy_to_bytes(len))
        };
        // As tonic's own codec: a message that does not parse is INTERNAL.
        message
            .map(Some)
            .map_err(|error| Status::internal(error.to_string()))
    }
}

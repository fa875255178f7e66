// The page's JPEG encoder, off the main thread: camera frames arrive as ImageBitmaps (in
// capture order, encoded in that order) and go back as JPEG blobs with their id.
"use strict";

let canvas = null;

self.onmessage = async (event) => {
  const { id, bitmap, quality } = event.data;
  if (!canvas || canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
    canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  }
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  const jpeg = await canvas.convertToBlob({ type: "image/jpeg", quality });
  self.postMessage({ id, jpeg });
};

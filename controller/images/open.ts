/**
 * Opens an image file as an ImageSource of the given format. The caller owns
 * the returned handle and must close it.
 */
import type { ImageFormat, ImageSource } from './extents.ts';
import { Qcow2Image, type Qcow2ImageOptions } from './qcow2/reader.ts';
import { FileHandleReader, type ClosableRandomAccessReader } from './random-access.ts';
import { RawImage } from './raw.ts';

export interface OpenedImage {
  readonly source: ImageSource;
  close(): Promise<void>;
}

export async function openImageSource(
  reader: ClosableRandomAccessReader,
  format: ImageFormat,
  options: Qcow2ImageOptions = {},
): Promise<OpenedImage> {
  try {
    const source = format === 'qcow2' ? await Qcow2Image.open(reader, options) : new RawImage(reader, options);
    return { source, close: () => reader.close() };
  } catch (err) {
    await reader.close();
    throw err;
  }
}

export async function openImageFile(path: string, format: ImageFormat, options: Qcow2ImageOptions = {}): Promise<OpenedImage> {
  return openImageSource(await FileHandleReader.open(path), format, options);
}

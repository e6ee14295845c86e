/**
 * Typed errors for image parsing. Both carry the offending field and value so
 * an operator reading an upload refusal knows what in the file was wrong
 * without opening a hex editor.
 */
import { BmError, UnsupportedError, type ErrorContext } from '../errors.ts';

/** The file is not a well-formed image of the format it claims to be (or is hostile). */
export class ImageFormatError extends BmError {
  readonly format: string;
  readonly field: string;
  constructor(format: string, field: string, message: string, context: ErrorContext = {}) {
    super('invalid-argument', `${format}: ${field}: ${message}`, { ...context, format, field });
    this.format = format;
    this.field = field;
  }
}

/** A qcow2 structure that violates the specification or our safety bounds. */
export class Qcow2FormatError extends ImageFormatError {
  constructor(field: string, message: string, context: ErrorContext = {}) {
    super('qcow2', field, message, context);
  }
}

/** A well-formed image that uses a feature we refuse to deploy (backing file, encryption, an unknown codec...). */
export class UnsupportedImageError extends UnsupportedError {
  readonly format: string;
  readonly feature: string;
  constructor(format: string, feature: string, message: string, context: ErrorContext = {}) {
    super(`${format}: ${feature}: ${message}`, { ...context, format, feature });
    this.format = format;
    this.feature = feature;
  }
}

/** A hex rendering for error context: offsets and bitmasks read better in hex. */
export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

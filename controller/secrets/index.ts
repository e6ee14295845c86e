/** The public face of controller/secrets/: what other folders import (scripts/check-imports.ts). */
export { loadSecretKey } from './key-file.ts';
export { SecretBox, SecretDecryptError } from './secret-box.ts';

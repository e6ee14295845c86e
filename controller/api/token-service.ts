/** TokenService: project tokens, made and removed by admins (the interceptor lets no member in). */
import { create } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { ServiceHandlers } from '../../proto/rpc/index.ts';
import { ApiTokenSchema, TokenService, type ApiToken } from '../../proto/gen/bm/v1/token_pb.js';
import type { TokenDirectory, TokenInfo } from '../auth/index.ts';

function tokenMessage(t: TokenInfo): ApiToken {
  return create(ApiTokenSchema, {
    id: t.id,
    project: t.project,
    role: t.role,
    description: t.description,
    createdAt: timestampFromDate(t.createdAt),
  });
}

export function tokenHandlers(tokens: TokenDirectory): ServiceHandlers<typeof TokenService> {
  return {
    async createToken(req) {
      const made = await tokens.create(req.project, req.role, req.description);
      return { token: made.token, info: tokenMessage(made.info) };
    },
    async listTokens() {
      return { tokens: (await tokens.list()).map(tokenMessage) };
    },
    async deleteToken(req) {
      await tokens.delete(req.id);
      return {};
    },
  };
}

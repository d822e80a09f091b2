// oidc-provider ships no type declarations; this is the small surface the
// authority uses, typed loosely on purpose (the library validates its own
// configuration at construction).
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export type AnyObject = Record<string, any>;
  export interface KoaContextWithOIDC extends AnyObject {
    oidc: AnyObject;
    req: IncomingMessage;
    res: ServerResponse;
  }

  export class OIDCProviderError extends Error {
    status: number;
    statusCode: number;
    error: string;
    error_description?: string;
    expose: boolean;
    constructor(status: number, message: string);
  }

  export const errors: {
    OIDCProviderError: typeof OIDCProviderError;
    InvalidGrant: new (description?: string, detail?: string) => OIDCProviderError;
    InvalidRequest: new (description?: string, code?: number, detail?: string) => OIDCProviderError;
    InvalidScope: new (description?: string, scope?: string, detail?: string) => OIDCProviderError;
    InvalidTarget: new (description?: string, detail?: string) => OIDCProviderError;
    InvalidClient: new (description?: string, detail?: string) => OIDCProviderError;
    UnauthorizedClient: new (description?: string, detail?: string) => OIDCProviderError;
    UnsupportedTokenType: new (description?: string, detail?: string) => OIDCProviderError;
    AccessDenied: new (description?: string, detail?: string) => OIDCProviderError;
    InvalidClientMetadata: new (description?: string, detail?: string) => OIDCProviderError;
  } & AnyObject;

  export default class Provider {
    constructor(issuer: string, configuration?: AnyObject);
    issuer: string;
    proxy: boolean;
    app: AnyObject;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    /** Koa's: a context over a raw request (cookies, secure) */
    createContext(req: IncomingMessage, res: ServerResponse): AnyObject;
    use(middleware: (ctx: KoaContextWithOIDC, next: () => Promise<void>) => Promise<void> | void): void;
    on(event: string, listener: (...args: any[]) => void): this;
    registerGrantType(
      name: string,
      handler: (ctx: KoaContextWithOIDC) => Promise<void>,
      params?: string[] | Set<string>,
      dupes?: string[] | Set<string>,
    ): void;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<AnyObject>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: AnyObject,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    interactionResult(
      req: IncomingMessage,
      res: ServerResponse,
      result: AnyObject,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<string>;
    Client: any;
    Grant: any;
    AccessToken: any;
    RefreshToken: any;
    ResourceServer: any;
    Session: any;
    Interaction: any;
    ClientCredentials: any;
  }
}

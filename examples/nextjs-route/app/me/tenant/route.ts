import { withSaiku } from '@saiku/fetch'
import { demo } from '../../../lib/saiku'

// GET /me/tenant: refused requests get their JSON refusal, admitted ones the tenant with the RateLimit fields.
export const GET = withSaiku(demo().auth, (_request, principal) => Response.json(principal!.tenant))

// Mesh fields of a service (who may call it, where it may call out).
// Owned by the pki/mesh component.
import { z } from 'zod';

export const ServiceMeshFields = {};
